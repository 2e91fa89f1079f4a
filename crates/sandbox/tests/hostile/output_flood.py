# Endless stdout: the run ends as output_exceeded with exactly the limit kept.
chunk = "A" * 65536
while True:
    sys.stdout.write(chunk)
