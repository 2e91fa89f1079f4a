# Four processes burning CPU: the CPU-time limit (for all processes together) ends the run long
# before its wall-time limit.
for _ in range(3):
    if os.fork() == 0:
        while True:
            pass
while True:
    pass
