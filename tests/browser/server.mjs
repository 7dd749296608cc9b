// A workspace with generated history and `csa serve` on a free port, for
// the browser tests: start() returns its URL, an admin token, an API
// helper and stop().
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const browserArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// A local SMTP server on a free loopback port that keeps what it is sent:
// { port, messages: [{ from, to: [...], data }], close() }.
export async function smtpSink() {
  const messages = [];
  const server = createServer((sock) => {
    let buf = '', data = null, from = '', to = [];
    sock.write('220 sink ESMTP\r\n');
    sock.on('data', (chunk) => {
      buf += chunk.toString('latin1');
      let nl;
      while ((nl = buf.indexOf('\r\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 2);
        if (data !== null) {
          if (line === '.') {
            messages.push({ from, to, data: data.join('\r\n') });
            data = null;
            sock.write('250 queued\r\n');
          } else data.push(line.startsWith('.') ? line.slice(1) : line);
        } else if (/^(EHLO|HELO)/i.test(line)) sock.write('250 sink\r\n');
        else if (/^MAIL FROM:/i.test(line)) { from = line.slice(10); to = []; sock.write('250 ok\r\n'); }
        else if (/^RCPT TO:/i.test(line)) { to.push(line.slice(8)); sock.write('250 ok\r\n'); }
        else if (/^DATA/i.test(line)) { data = []; sock.write('354 go ahead\r\n'); }
        else if (/^QUIT/i.test(line)) { sock.end('221 bye\r\n'); }
        else sock.write(/^(RSET|NOOP)/i.test(line) ? '250 ok\r\n' : '502 not implemented\r\n');
      }
    });
    sock.on('error', () => {});
  });
  await new Promise((r) => server.listen(0, '127.0.0.1', r));
  return { port: server.address().port, messages, close: () => new Promise((r) => server.close(r)) };
}

// config: csa.json keys for the server (MODEL_CONFIG_PATH), or null.
export async function start(csa, tickets = 400, env = {}, config = null) {
  const ws = mkdtempSync(join(tmpdir(), 'csa-browser-'));
  const run = (...args) => execFileSync(csa, [...args, '--dir', ws], { encoding: 'utf8' });
  execFileSync(csa, ['init', ws]);
  execFileSync(csa, ['demo-data', '--tickets', String(tickets), '--seed', '5', '--out', join(ws, 'h.jsonl')]);
  run('import', join(ws, 'h.jsonl'));
  const token = JSON.parse(run('token', 'create', '--role', 'admin')).token;

  const extra = {};
  if (config) {
    extra.MODEL_CONFIG_PATH = join(ws, 'test-config.json');
    writeFileSync(extra.MODEL_CONFIG_PATH, JSON.stringify(config), { mode: 0o600 });
  }
  const server = spawn(csa, ['serve', '--dir', ws, '--port', '0'],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env, ...extra } });
  const exited = new Promise((r) => server.on('exit', (code) => r(code)));
  const base = await new Promise((resolve, reject) => {
    let out = '';
    server.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/"listening": "(http:\/\/[^"]+)"/);
      if (m) resolve(m[1].replace(/\/$/, ''));
    });
    server.on('exit', (c) => reject(new Error('csa serve exited with ' + c)));
  });
  const api = (method, path, body) => fetch(base + path, {
    method, headers: { Authorization: 'Bearer ' + token, 'Content-Type': 'application/json' },
    body: body && JSON.stringify(body),
  }).then(async (r) => ({ status: r.status, json: await r.json() }));
  // the exit status of csa serve after SIGTERM (0 when it stopped cleanly)
  const stop = async () => {
    server.kill('SIGTERM');
    const code = await exited;
    rmSync(ws, { recursive: true, force: true });
    return code;
  };
  return { ws, base, token, api, stop };
}
