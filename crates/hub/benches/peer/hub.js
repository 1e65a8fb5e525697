// The Node 20 + `ws` reference hub of the fan-out bench (crates/hub/benches/fanout.rs,
// docs/benchmarks.md "Hub fan-out"): the same job as the hub's fan-out path, written
// the way a Node service would be, so the bench can print the hub's figures next to it.
//
// - `GET /api/ws`: a WebSocket (`ws`, no compression, 16 KiB max payload); its first
//   message is taken as `auth` (the token is not verified: only the fan-out is
//   compared) and answered with an `auth.ok` ack, then the socket gets every event.
// - `POST /api/internal/events`: the body (an event) becomes a v1 envelope with the
//   next `seq`, encoded once into a Buffer and sent to every authenticated socket.
// - `GET /health`: `{"replay":{"headSeq":N}}`, the last `seq`.
//
// It prints `ADDR 127.0.0.1:<port>` and exits when its stdin closes.
'use strict';

const http = require('node:http');
const { WebSocketServer } = require('ws');

let seq = 0;
const sockets = new Set();
const wss = new WebSocketServer({ noServer: true, perMessageDeflate: false, maxPayload: 16 * 1024 });
const ACK = Buffer.from('{"v":1,"type":"ack","event":"auth.ok"}');

const server = http.createServer((req, res) => {
  if (req.method === 'GET' && req.url === '/health') {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ replay: { headSeq: seq } }));
    return;
  }
  if (req.method === 'POST' && req.url === '/api/internal/events') {
    const chunks = [];
    req.on('data', (chunk) => chunks.push(chunk));
    req.on('end', () => {
      seq += 1;
      const frame = Buffer.from(
        `{"v":1,"type":"event","event":${Buffer.concat(chunks)},"ts":${Date.now()},"seq":${seq}}`,
      );
      for (const ws of sockets) ws.send(frame, { binary: false });
      res.end();
    });
    return;
  }
  res.statusCode = 404;
  res.end();
});
server.keepAliveTimeout = 3600 * 1000;
server.headersTimeout = 3601 * 1000;
server.requestTimeout = 0;

server.on('upgrade', (req, socket, head) => {
  if (req.url !== '/api/ws') {
    socket.destroy();
    return;
  }
  wss.handleUpgrade(req, socket, head, (ws) => {
    ws.once('message', () => {
      sockets.add(ws);
      ws.send(ACK, { binary: false });
    });
    ws.on('close', () => sockets.delete(ws));
    ws.on('error', () => sockets.delete(ws));
  });
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(`ADDR 127.0.0.1:${server.address().port}\n`);
});
process.stdin.on('end', () => process.exit(0));
process.stdin.resume();
