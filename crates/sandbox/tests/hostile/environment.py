# The environment is exactly the environment's own variables: nothing of the host's leaks in.
with open("/proc/1/environ", "rb") as f:
    init_env = dict(kv.decode().split("=", 1) for kv in f.read().split(b"\0") if kv)
emit(env=dict(os.environ), init_env=init_env)
