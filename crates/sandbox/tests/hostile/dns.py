# DNS: names outside /etc/hosts do not resolve (no resolver, no network); localhost does.
def gai(host):
    try:
        return {"ok": sorted({a[4][0] for a in socket.getaddrinfo(host, 80, proto=socket.IPPROTO_TCP)})}
    except socket.gaierror as e:
        return {"gaierror": e.errno}
    except OSError as e:
        return {"errno": e.errno}


emit(example=gai("example.com"), google=gai("www.google.com"), localhost=gai("localhost"))
