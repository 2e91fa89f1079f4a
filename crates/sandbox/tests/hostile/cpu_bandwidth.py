# Two processes burning CPU under a half-core bandwidth limit: CPU time stays near half the wall time.
if os.fork() == 0:
    while True:
        pass
while True:
    pass
