# Control: a benign program starting threads works (the policy answers clone3 with ENOSYS so
# that the C library falls back to clone, whose flags seccomp can check).
import threading

ran = []
errors = []


def work(i):
    ran.append(i)


threads = []
for i in range(4):
    t = threading.Thread(target=work, args=(i,))
    try:
        t.start()
        threads.append(t)
    except RuntimeError as e:
        errors.append(str(e))
for t in threads:
    t.join()
emit(ran=sorted(ran), errors=errors)
