# Endless stderr: the run ends as output_exceeded with exactly the limit kept.
chunk = "E" * 65536
while True:
    sys.stderr.write(chunk)
