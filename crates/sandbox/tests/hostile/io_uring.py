# io_uring (a large, bug-prone kernel surface that bypasses seccomp per operation): refused.
params = ctypes.create_string_buffer(120)
emit(
    setup=sysc(425, 8, params),
    enter=sysc(426, 0, 1, 0, 0, None, 0),
    register=sysc(427, 0, 0, None, 0),
)
