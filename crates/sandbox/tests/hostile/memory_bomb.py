# Allocating (and touching) memory without end: the run ends as memory_exceeded.
chunks = []
while True:
    chunks.append(bytearray(b"\x01") * (4 << 20))
