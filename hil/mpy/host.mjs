// Runs MicroPython firmware on the real MicroPython interpreter (the WebAssembly port,
// npm @micropython/micropython-webassembly-pyscript) with a board model for `machine`
// (hil/mpy/machine.py). The board's UART is a file descriptor this process inherits
// (a pty master: the other end is the serial port the gateway or the bench opens).
// Pin changes are printed on stdout as JSON lines {"t": ms since start, "pin": n, "v": 0|1};
// the firmware's own print() goes to stderr. os.dupterm(uart) hands the UART to the
// MicroPython REPL (raw REPL included); Ctrl-D there, or machine.soft_reset(), is a soft
// reset: the files written in /flash are kept, the interpreter starts afresh, main runs.
// machine.Timer callbacks run from node's event loop (also while the REPL has the UART);
// machine.reset() is reported as {"event": "reset"} and boots the same way; every reset
// stops all timers, as on the board.
//
// usage: node host.mjs --wasm MJS --fd N --dir FIRMWARE_DIR [--main main]
import fs from "node:fs";
import path from "node:path";

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, v, i, a) => (i % 2 === 0 ? [...acc, [v.replace(/^--/, ""), a[i + 1]]] : acc), []),
);
const { loadMicroPython } = await import(args.wasm);
const fd = Number(args.fd);
const mainModule = args.main || "main";
const t0 = performance.now();
const machinePy = fs.readFileSync(new URL("./machine.py", import.meta.url));

let files = new Map();
for (const name of fs.readdirSync(args.dir)) {
  if (name.endsWith(".py")) files.set(name, fs.readFileSync(path.join(args.dir, name)));
}

let mp = null;
let replMode = false;
let rebooting = false;
const rxQueue = [];
const timers = new Map();
let nextTimer = 0;

function armTimer(ms, periodic, callback) {
  const id = nextTimer++;
  const fire = () => {
    if (periodic) timers.set(id, setTimeout(fire, ms));
    else timers.delete(id);
    callback();
  };
  timers.set(id, setTimeout(fire, ms));
  return id;
}

function cancelTimer(id) {
  clearTimeout(timers.get(id));
  timers.delete(id);
}

function writeLine(bytes) {
  let off = 0;
  while (off < bytes.length) {
    try {
      off += fs.writeSync(fd, bytes, off);
    } catch (e) {
      if (e.code !== "EAGAIN") throw e;
    }
  }
}

function emit(obj) {
  process.stdout.write(JSON.stringify({ t: Math.round((performance.now() - t0) * 10) / 10, ...obj }) + "\n");
}

function snapshot() {
  const out = new Map();
  for (const name of mp.FS.readdir("/flash")) {
    if (name.endsWith(".py")) out.set(name, Buffer.from(mp.FS.readFile("/flash/" + name)));
  }
  return out;
}

async function boot() {
  replMode = false;
  const stdout = (b) => (replMode ? writeLine(Buffer.from(b)) : process.stderr.write(Buffer.from(b)));
  mp = await loadMicroPython({ stdout, stderr: (b) => process.stderr.write(Buffer.from(b)), linebuffer: false });
  mp.FS.mkdir("/flash");
  for (const [name, data] of files) mp.FS.writeFile("/flash/" + name, data);
  mp.FS.mkdir("/board");
  mp.FS.writeFile("/board/machine.py", machinePy);
  mp.registerJsModule("board_host", {
    read: () => (rxQueue.length ? new Uint8Array(rxQueue.splice(0)) : null),
    write: (hex) => writeLine(Buffer.from(hex, "hex")),
    pin: (n, v) => emit({ pin: n, v }),
    soft_reset: () => setTimeout(reboot, 0),
    reset: () => setTimeout(() => reboot("reset"), 0),
    timer: armTimer,
    timer_cancel: cancelTimer,
    dupterm: () => {
      replMode = true;
      emit({ event: "repl" });
      mp.replInit();
    },
  });
  emit({ event: "boot", files: [...files.keys()].sort() });
  try {
    mp.runPython(`
import sys, os, asyncio, board_host
sys.path.insert(0, '/board')
sys.path.insert(0, '/flash')
os.chdir('/flash')
os.dupterm = lambda stream, index=0: board_host.dupterm()
asyncio.run = lambda coro: asyncio.create_task(coro)
import ${mainModule}
`);
  } catch (e) {
    process.stderr.write(`firmware failed: ${e.message}\n`);
    emit({ event: "crash", error: String(e.message).split("\n").slice(-2).join(" ") });
  }
}

async function reboot(kind = "soft_reset") {
  if (rebooting) return;
  rebooting = true;
  for (const id of [...timers.keys()]) cancelTimer(id);
  files = snapshot();
  emit({ event: kind });
  await boot();
  rebooting = false;
}

const buf = Buffer.alloc(4096);
function poll() {
  for (;;) {
    let n = 0;
    try {
      n = fs.readSync(fd, buf, 0, buf.length, null);
    } catch (e) {
      if (e.code === "EAGAIN") break;
      if (e.code === "EIO") process.exit(0); // the other end closed for good
      throw e;
    }
    if (n <= 0) break;
    if (replMode && !rebooting) {
      for (let i = 0; i < n; i++) {
        if (mp.replProcessChar(buf[i]) !== 0) {
          rxQueue.push(...buf.subarray(i + 1, n));
          setTimeout(reboot, 0);
          break;
        }
      }
    } else {
      rxQueue.push(...buf.subarray(0, n));
    }
  }
  setTimeout(poll, 2);
}

process.on("SIGTERM", () => process.exit(0));
await boot();
poll();
