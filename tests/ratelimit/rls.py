"""A rate-limit service for keygate's fleet tests: Envoy's gRPC RateLimitService
(envoy.service.ratelimit.v3) on 127.0.0.1, counting fixed windows in memory the way a
Redis-backed envoyproxy/ratelimit counts them, from the descriptors of `ratelimit/config.yaml`
(given here as JSON, converted by the test).

    rls.py --port PORT --config FILE.json --log FILE

Each call is appended to the log as one JSON line: the descriptors received and the code given.
The messages are encoded and decoded by hand (a handful of fields), so only grpcio is needed.
"""

import argparse
import json
import sys
import threading
import time
from concurrent import futures

import grpc

SERVICE = "envoy.service.ratelimit.v3.RateLimitService"
UNITS = {"second": (1, 1), "minute": (60, 2), "hour": (3600, 3), "day": (86400, 4)}
OK, OVER_LIMIT = 1, 2


def varint(data, pos):
    shift = result = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7


def fields(data):
    """(field number, wire type, value) of one message; length-delimited values as bytes."""
    pos = 0
    while pos < len(data):
        key, pos = varint(data, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = varint(data, pos)
        elif wire == 2:
            size, pos = varint(data, pos)
            value, pos = data[pos:pos + size], pos + size
        elif wire == 1:
            value, pos = data[pos:pos + 8], pos + 8
        elif wire == 5:
            value, pos = data[pos:pos + 4], pos + 4
        else:
            raise ValueError("unsupported wire type %d" % wire)
        yield number, wire, value


def put_varint(value):
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def put(number, value):
    if isinstance(value, int):
        return put_varint(number << 3) + put_varint(value)
    return put_varint(number << 3 | 2) + put_varint(len(value)) + value


def parse_request(data):
    domain, descriptors = "", []
    for number, _, value in fields(data):
        if number == 1:
            domain = value.decode()
        elif number == 2:
            entries = []
            for n, _, entry in fields(value):
                if n == 1:
                    kv = {k: v.decode() for k, _, v in fields(entry)}
                    entries.append((kv.get(1, ""), kv.get(2, "")))
            descriptors.append(entries)
    return domain, descriptors


def find_limit(nodes, entries):
    """The rate limit of the deepest config node the entries walk to, or None."""
    limit = None
    for key, value in entries:
        match = next((n for n in nodes if n.get("key") == key and n.get("value") == value), None)
        if match is None:
            match = next((n for n in nodes if n.get("key") == key and "value" not in n), None)
        if match is None:
            return None
        limit = match.get("rate_limit")
        nodes = match.get("descriptors", [])
    return limit


class Service:
    def __init__(self, config, log):
        self.config, self.log = config, log
        self.counts, self.lock = {}, threading.Lock()

    def should_rate_limit(self, request, _context):
        domain, descriptors = parse_request(request)
        overall, statuses, seen = OK, [], []
        now = time.time()
        for entries in descriptors:
            limit = find_limit(self.config.get("descriptors", []), entries) \
                if domain == self.config.get("domain") else None
            if limit is None:
                statuses.append(put(1, OK))
                seen.append({"entries": entries, "limited": False})
                continue
            seconds, unit = UNITS[limit["unit"]]
            window = int(now // seconds) * seconds
            key = (domain, tuple(entries), window)
            with self.lock:
                count = self.counts.get(key, 0) + 1
                self.counts[key] = count
            allowed = limit["requests_per_unit"]
            code = OK if count <= allowed else OVER_LIMIT
            if code == OVER_LIMIT:
                overall = OVER_LIMIT
            reset = max(1, int(window + seconds - now))
            status = put(1, code) + put(2, put(1, allowed) + put(2, unit)) \
                + put(3, max(0, allowed - count)) + put(4, put(1, reset))
            statuses.append(status)
            seen.append({"entries": entries, "limited": True, "count": count,
                         "code": "OVER_LIMIT" if code == OVER_LIMIT else "OK"})
        with self.lock:
            self.log.write(json.dumps({"domain": domain, "descriptors": seen}) + "\n")
            self.log.flush()
        return put(1, overall) + b"".join(put(2, s) for s in statuses)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--config", required=True)
    parser.add_argument("--log", required=True)
    args = parser.parse_args()
    with open(args.config) as f:
        config = json.load(f)
    log = open(args.log, "a")
    service = Service(config, log)
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handler = grpc.method_handlers_generic_handler(SERVICE, {
        "ShouldRateLimit": grpc.unary_unary_rpc_method_handler(service.should_rate_limit),
    })
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port("127.0.0.1:%d" % args.port)
    server.start()
    print("rls listening on 127.0.0.1:%d" % args.port, flush=True)
    # A test peer: it stops by itself after ten minutes if nobody ends it first.
    server.wait_for_termination(timeout=600)
    sys.exit(0)


if __name__ == "__main__":
    main()
