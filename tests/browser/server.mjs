// A workspace with generated history and `csa serve` on a free port, for
// the browser tests: start() returns its URL, an admin token, an API
// helper and stop().
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const browserArgs = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync'];

export async function start(csa, tickets = 400, env = {}) {
  const ws = mkdtempSync(join(tmpdir(), 'csa-browser-'));
  const run = (...args) => execFileSync(csa, [...args, '--dir', ws], { encoding: 'utf8' });
  execFileSync(csa, ['init', ws]);
  execFileSync(csa, ['demo-data', '--tickets', String(tickets), '--seed', '5', '--out', join(ws, 'h.jsonl')]);
  run('import', join(ws, 'h.jsonl'));
  const token = JSON.parse(run('token', 'create', '--role', 'admin')).token;

  const server = spawn(csa, ['serve', '--dir', ws, '--port', '0'],
    { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...env } });
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
