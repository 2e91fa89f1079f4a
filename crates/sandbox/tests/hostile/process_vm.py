# process_vm_readv / process_vm_writev on the init and on an own child: refused by seccomp.
import time


class Iovec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]


secret = ctypes.create_string_buffer(b"secret", 64)
child = os.fork()
if child == 0:
    time.sleep(30)
    os._exit(0)
local = Iovec(ctypes.cast(ctypes.create_string_buffer(64), ctypes.c_void_p), 64)
remote = Iovec(ctypes.cast(secret, ctypes.c_void_p), 64)
res = dict(
    readv_child=sysc(310, child, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0),
    writev_child=sysc(311, child, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0),
    readv_init=sysc(310, 1, ctypes.byref(local), 1, ctypes.byref(remote), 1, 0),
)
os.kill(child, 9)
os.waitpid(child, 0)
emit(**res)
