# bench/stream/slow_reader.sh's client: sends one streamed generate, reads nothing until droverd has generated it all
# (the worker holds nothing any more), then reads everything: frames, bytes, coalesced frames.
import json, socket, subprocess, sys, time
sock_path, ctl = sys.argv[1], sys.argv[2]
s = socket.socket(socket.AF_UNIX); s.connect(sock_path)
s.sendall(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "generate",
    "params": {"prompt": "flood", "max_tokens": 16000, "stream": True, "seed": 3}}).encode() + b"\n")
def telemetry():
    t = json.loads(subprocess.run([ctl, "--socket", sock_path, "call", "telemetry.metrics"], capture_output=True, text=True).stdout)
    return t.get("result", t)["streams"]
while telemetry()["active"] != 0 or telemetry()["waiting"] != 0:  # the stream ended at the worker: all of it is in droverd or the socket
    time.sleep(0.1)
t = telemetry()
buf = b""; frames = merged = nbytes = 0; text = ""; reply = None
while reply is None:
    data = s.recv(1 << 20)
    if not data: break
    nbytes += len(data); buf += data
    while b"\n" in buf:
        line, buf = buf.split(b"\n", 1)
        m = json.loads(line)
        if "method" in m:
            frames += 1; text += m["params"]["text"]; merged += m["params"].get("coalesced", 1) > 1
        else: reply = m
ok = reply and "result" in reply and reply["result"]["text"] == text
print(f"frames {frames}, merged frames {merged}, bytes read {nbytes}, text bytes {len(text)}, exact {ok}, "
      f"reply {'result' if reply and 'result' in reply else reply}, droverd held at the end: "
      f"episodes {t['coalescing_episodes_total']} slow_consumer_cancels {t['slow_consumer_cancels_total']}")
