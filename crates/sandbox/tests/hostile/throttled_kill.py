# A run killed at its wall-time limit while the CPU bandwidth limit throttles it, so that its
# processes take a while to die: it ends as timed_out and nothing of it runs once the engine
# has returned (checked for every run).
emit(started=True)
while True:
    pass
