# The kernel keyring: keyctl, add_key and request_key are refused by seccomp.
KEY_SPEC_SESSION_KEYRING, KEY_SPEC_USER_KEYRING = -3, -4
KEYCTL_GET_KEYRING_ID, KEYCTL_JOIN_SESSION_KEYRING, KEYCTL_READ = 0, 1, 11
buf = ctypes.create_string_buffer(4096)
emit(
    get_keyring_id=sysc(250, KEYCTL_GET_KEYRING_ID, KEY_SPEC_SESSION_KEYRING, 1),
    join_session=sysc(250, KEYCTL_JOIN_SESSION_KEYRING, 0),
    read_user=sysc(250, KEYCTL_READ, KEY_SPEC_USER_KEYRING, buf, 4096),
    add_key=sysc(248, b"user", b"assay", b"secret", 6, KEY_SPEC_SESSION_KEYRING),
    request_key=sysc(249, b"user", b"assay", None, 0),
)
