#!/usr/bin/env python3
"""bench/forwarders/pipeline-flood.py: does a path hold back a client that sends far ahead of its server?

Logs in (trust or password authentication only: run it against a server that trusts 127.0.0.1), sends
`SELECT pg_sleep(20)`, then keeps sending more queries without reading anything. Straight to
PostgreSQL the client stops within a few MB, once the socket buffers are full; a relay with
backpressure does the same. Prints how much it could send before a send blocked for 3 s, and how much
memory the host lost meanwhile (MemAvailable, sampled every 50 ms).

    bench/forwarders/pipeline-flood.py <port> [user] [password] [MB to try, default 400]
"""
import hashlib, socket, struct, sys, threading, time

port = int(sys.argv[1])
user = sys.argv[2] if len(sys.argv) > 2 else 'postgres'
password = sys.argv[3] if len(sys.argv) > 3 else None
limit = (int(sys.argv[4]) if len(sys.argv) > 4 else 400) << 20


def mem_available_kb():
    with open('/proc/meminfo') as f:
        for line in f:
            if line.startswith('MemAvailable:'):
                return int(line.split()[1])
    raise RuntimeError('no MemAvailable in /proc/meminfo')


def message(kind, body):
    return kind + struct.pack('!i', 4 + len(body)) + body


def read_message(s):
    head = b''
    while len(head) < 5:
        head += s.recv(5 - len(head))
    length = struct.unpack('!i', head[1:])[0] - 4
    body = b''
    while len(body) < length:
        body += s.recv(length - len(body))
    return head[:1], body


s = socket.create_connection(('127.0.0.1', port))
params = b'user\0' + user.encode() + b'\0database\0postgres\0\0'
s.sendall(struct.pack('!ii', 8 + len(params), 196608) + params)
while True:
    kind, body = read_message(s)
    if kind == b'R' and struct.unpack('!i', body[:4])[0] in (3, 5):
        if password is None:
            sys.exit('the server asks for a password: pass one')
        code = struct.unpack('!i', body[:4])[0]
        pw = password.encode()
        if code == 5:  # md5
            inner = hashlib.md5(pw + user.encode()).hexdigest().encode()
            pw = b'md5' + hashlib.md5(inner + body[4:8]).hexdigest().encode()
        s.sendall(message(b'p', pw + b'\0'))
    elif kind == b'R' and struct.unpack('!i', body[:4])[0] not in (0,):
        sys.exit('this script speaks trust, password and md5 authentication only')
    elif kind == b'E':
        sys.exit('refused: ' + body.decode(errors='replace'))
    elif kind == b'Z':
        break

lowest = [mem_available_kb()]
before = lowest[0]
sampling = True


def sample():
    while sampling:
        lowest[0] = min(lowest[0], mem_available_kb())
        time.sleep(0.05)


threading.Thread(target=sample, daemon=True).start()
s.sendall(message(b'Q', b'SELECT pg_sleep(20)\0'))
chunk = message(b'Q', b'SELECT 1;' + b' ' * 4000 + b'\0') * 16
s.settimeout(3)
sent, started = 0, time.time()
try:
    while sent < limit:
        s.sendall(chunk)
        sent += len(chunk)
except socket.timeout:
    pass
elapsed = time.time() - started
time.sleep(0.5)
sampling = False
print(f'sent {sent >> 20} MB ahead of the server in {elapsed:.1f} s; MemAvailable fell by {(before - lowest[0]) >> 10} MB')
s.close()
