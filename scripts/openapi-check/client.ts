// A client of the Assay API built only from docs/openapi.json: the types in generated/api.d.ts
// are generated from the document (openapi-typescript), the calls go through a typed client
// (openapi-fetch). If the document misdeclares a parameter, a body or a response, this file
// stops type-checking. Lines marked @ts-expect-error must NOT type-check: they prove that
// mistakes the old document allowed are now caught.
import createClient from "openapi-fetch";
import type { components, paths } from "./generated/api";

type EvaluationView = components["schemas"]["EvaluationView"];
type EvaluationSummary = components["schemas"]["EvaluationSummary"];
type ErrorCode = components["schemas"]["ErrorCode"];

const client = createClient<paths>({
  baseUrl: "http://127.0.0.1:8080",
  headers: { Authorization: "Bearer ak_0000" },
});

export async function submitAndWait(code: string): Promise<EvaluationView | undefined> {
  const { data, error } = await client.POST("/v1/evaluations", {
    params: { query: { wait: 30 }, header: { "Idempotency-Key": "retry-1" } },
    body: { language: "python", code, limits: { wall_time_ms: 5000 }, labels: { suite: "smoke" } },
  });
  if (error) {
    const code: ErrorCode = error.error.code;
    throw new Error(`${code}: ${error.error.message}`);
  }
  return data;
}

export async function listFailed(cursor?: string): Promise<EvaluationSummary[]> {
  const { data } = await client.GET("/v1/evaluations", {
    params: { query: { status: "failed", label: "suite=smoke", limit: 50, cursor } },
  });
  return data?.items ?? [];
}

export async function outputOf(id: string): Promise<string> {
  const { data } = await client.GET("/v1/evaluations/{id}", { params: { path: { id } } });
  return data?.result?.stdout ?? "";
}

export async function batch(codes: string[]): Promise<string[]> {
  const { data } = await client.POST("/v1/evaluations/batch", {
    params: { header: { "Idempotency-Key": "batch-1" } },
    body: { items: codes.map((code) => ({ language: "python", code })) },
  });
  return data?.items.map((e) => e.id) ?? [];
}

export async function admin(): Promise<void> {
  await client.POST("/v1/evaluations/{id}/cancel", { params: { path: { id: "e1" } } });
  await client.POST("/v1/evaluations/{id}/requeue", { params: { path: { id: "e1" } } });
  const key = await client.POST("/v1/keys", {
    body: { tenant: "acme", role: "viewer", name: "dashboard" },
  });
  const secret: string | undefined = key.data?.key;
  void secret;
  await client.DELETE("/v1/keys/{id}", { params: { path: { id: "key_1" } } });
  await client.GET("/v1/keys", { params: { query: { tenant: "acme" } } });
  await client.GET("/v1/dead-letters", { params: { query: { limit: 10 } } });
  const audit = await client.GET("/v1/audit", {
    params: { query: { action: "evaluation.submit", order: "oldest", limit: 100 } },
  });
  const seq: number | undefined = audit.data?.items[0]?.seq;
  void seq;
  const queue = await client.GET("/v1/queue");
  const workers: number | undefined = queue.data?.workers.length;
  void workers;
  const me = await client.GET("/v1/me");
  const role: "admin" | "member" | "viewer" | undefined = me.data?.role;
  void role;
}

export function mistakes(): void {
  // @ts-expect-error: `status` is a query parameter, not a path parameter
  void client.GET("/v1/evaluations", { params: { path: { status: "failed" } } });
  const summary = {} as EvaluationSummary;
  // @ts-expect-error: a list item is a summary, without the output
  void summary.result?.stdout;
  // @ts-expect-error: the body refuses unknown fields' types (language is a string)
  void client.POST("/v1/evaluations", { body: { language: 3 } });
  // @ts-expect-error: no such route
  void client.GET("/v1/evaluation");
}
