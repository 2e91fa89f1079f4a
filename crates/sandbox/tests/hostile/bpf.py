# bpf(2): map creation and program loading are refused by seccomp.
BPF_MAP_CREATE, BPF_PROG_LOAD = 0, 5
attr = ctypes.create_string_buffer(128)
# BPF_MAP_TYPE_ARRAY, key 4 bytes, value 4 bytes, 1 entry
ctypes.memmove(attr, (ctypes.c_uint32 * 4)(2, 4, 4, 1), 16)
emit(
    map_create=sysc(321, BPF_MAP_CREATE, attr, 128),
    prog_load=sysc(321, BPF_PROG_LOAD, ctypes.create_string_buffer(128), 128),
)
