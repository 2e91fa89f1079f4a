# perf_event_open: refused by seccomp.
attr = ctypes.create_string_buffer(128)
# type PERF_TYPE_SOFTWARE (1), size 128, config PERF_COUNT_SW_CPU_CLOCK (0)
ctypes.memmove(attr, (ctypes.c_uint32 * 2)(1, 128), 8)
hw = ctypes.create_string_buffer(128)
ctypes.memmove(hw, (ctypes.c_uint32 * 2)(0, 128), 8)
emit(
    software_self=sysc(298, attr, 0, -1, -1, 0),
    software_init=sysc(298, attr, 1, -1, -1, 0),
    hardware_all_cpus=sysc(298, hw, -1, 0, -1, 0),
)
