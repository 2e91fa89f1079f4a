# Taking the host's CPU with real-time or raised priority: refused.
import os

SCHED_FIFO, SCHED_RR = 1, 2
param = os.sched_param(50)
emit(
    sched_fifo=oserr(os.sched_setscheduler, 0, SCHED_FIFO, param),
    sched_rr=oserr(os.sched_setscheduler, 0, SCHED_RR, param),
    nice_raise=oserr(os.setpriority, os.PRIO_PROCESS, 0, -10),
    nice_after=os.getpriority(os.PRIO_PROCESS, 0),
    scheduler_after=os.sched_getscheduler(0),
)
