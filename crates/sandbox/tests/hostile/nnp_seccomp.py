# no_new_privs is set and a seccomp filter is in force (as /proc and prctl report them).
PR_GET_SECCOMP, PR_GET_NO_NEW_PRIVS, PR_SET_NO_NEW_PRIVS = 21, 39, 38
st = status_fields()
emit(
    status_nnp=st.get("NoNewPrivs"),
    status_seccomp=st.get("Seccomp"),
    prctl_nnp=libc.prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0),
    prctl_seccomp=libc.prctl(PR_GET_SECCOMP, 0, 0, 0, 0),
    clear_nnp=call(libc.prctl, PR_SET_NO_NEW_PRIVS, 0, 0, 0, 0),
)
