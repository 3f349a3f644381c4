// The upload page in a real browser: headless Debian Chromium driven by playwright-core, with
// axe-core for the accessibility check. Started by run.sh (which starts `msrpcast serve` and the
// receivers): `node browser.test.mjs http|https`. Prints one line per check (`ok ...` /
// `FAIL ...`), appends the same lines to $RESULTS, and exits non-zero when a check failed.
//
// Environment (set by run.sh): BASE_URL, TOKEN, ARTIFACTS, CHROMIUM, RECEIVERS (the folder with
// each receiver's `NAME/` files and `NAME.log`), RESULTS; for https also TRUST_HOME (a $HOME
// whose NSS database trusts the test CA) and PLAIN_HOME (one without it).
import { chromium } from 'playwright-core';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { createRequire } from 'node:module';

const require = createRequire(import.meta.url);
const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`environment variable ${k} is not set (run tests/browser/run.sh)`);
  return v;
};
const BASE = env('BASE_URL');
const TOKEN = env('TOKEN');
const ART = env('ARTIFACTS');
const RESULTS = env('RESULTS');
const RX = env('RECEIVERS');
const EXE = process.env.CHROMIUM || '/usr/bin/chromium';
const MiB = 1024 * 1024;
const phase = process.argv[2];
const AXE = fs.readFileSync(require.resolve('axe-core/axe.min.js'), 'utf8');

let failures = 0;
const cleanups = [];
function record(ok, name, detail) {
  const line = `${ok ? 'ok' : 'FAIL'} ${phase}: ${name}${detail ? ` (${detail})` : ''}`;
  console.log(line);
  fs.appendFileSync(RESULTS, line + '\n');
  if (!ok) failures++;
  return ok;
}
// check(name, fn): fn returns a detail string (pass) or throws (fail, with the message).
async function check(name, fn) {
  try {
    return record(true, name, await fn());
  } catch (e) {
    return record(false, name, String(e && e.message ? e.message : e).split('\n')[0]);
  }
}
function assert(cond, msg) {
  if (!cond) throw new Error(msg);
}
const sha1 = (buf) => crypto.createHash('sha1').update(buf).digest('hex');
const ms = (t0) => `${Date.now() - t0} ms`;
const shots = [];
async function shot(page, name) {
  const file = path.join(ART, `browser-${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(path.basename(file));
}

// The delivery rows of transfer `id`, in document order.
async function rows(page, id) {
  return page.$$eval(`article.transfer[data-transfer="${id}"] tr.delivery`, (trs) =>
    trs.map((tr) => {
      const t = (sel) => (tr.querySelector(sel) || {}).textContent || '';
      return {
        participant: tr.getAttribute('data-participant'),
        state: tr.getAttribute('data-state'),
        outcome: t('.outcome'),
        detail: t('td.state .detail'),
        percent: Number(tr.getAttribute('data-percent')),
        bar: (tr.querySelector('progress') || {}).value,
        bytes: t('td.bytes'),
        rate: t('td.rate'),
        eta: t('td.eta'),
      };
    }),
  );
}
const describe = (rs) =>
  rs.map((r) => `${r.participant}:${r.state}${r.outcome ? `:${r.outcome}` : ''}`).join(', ') || 'no rows';
const FINAL = new Set(['done', 'failed', 'cancelled']);

// Waits until transfer `id` shows `n` rows that all satisfy `ok` (a row in a final state that
// does not is an early failure). Returns the rows.
async function waitRows(page, id, n, ok, what, timeoutMs) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const rs = await rows(page, id);
    if (rs.length === n && rs.every(ok)) return rs;
    const wrong = rs.find((r) => FINAL.has(r.state) && !ok(r));
    if (wrong) throw new Error(`${wrong.participant} ended ${wrong.state} ${wrong.outcome}: ${describe(rs)}`);
    if (Date.now() > end) throw new Error(`not ${what} after ${timeoutMs} ms: ${describe(rs)}`);
    await page.waitForTimeout(50);
  }
}

// Sizes and SHA-1s of the files a receiver saved.
function received(name) {
  const dir = path.join(RX, name);
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).map((f) => {
    const data = fs.readFileSync(path.join(dir, f));
    return { file: f, bytes: data.length, sha1: sha1(data) };
  });
}
function hasCopy(name, digest, bytes) {
  const hit = received(name).find((f) => f.sha1 === digest);
  assert(hit, `${name}: no file with SHA-1 ${digest} in ${JSON.stringify(received(name))}`);
  assert(hit.bytes === bytes, `${name}: ${hit.bytes} bytes`);
  const log = fs.readFileSync(path.join(RX, `${name}.log`), 'utf8');
  assert(
    log.split('\n').some((l) => l.startsWith('received ') && l.split(' ')[3] === digest),
    `${name}: no "received ... ${digest}" line in its output`,
  );
  return hit;
}

async function launch(home) {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'msrpcast-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: EXE,
    headless: true,
    // Over HTTPS Chromium reads the trusted CAs from $HOME/.pki/nssdb (see run.sh).
    env: home ? { ...process.env, HOME: home } : process.env,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
    viewport: { width: 1100, height: 900 },
  });
  cleanups.push(() => fs.rmSync(userDataDir, { recursive: true, force: true }));
  return context;
}

// The answer to an upload cannot be read through the DevTools protocol: a large request body
// evicts it from the inspector's cache. So the page's XMLHttpRequests record their answers.
function recordXhrAnswers() {
  const send = XMLHttpRequest.prototype.send;
  XMLHttpRequest.prototype.send = function (body) {
    this.addEventListener('loadend', () => {
      (window.__xhrAnswers = window.__xhrAnswers || []).push({ status: this.status, body: this.responseText });
    });
    return send.call(this, body);
  };
}
async function xhrAnswers(page, n, timeoutMs) {
  await page.waitForFunction((n) => (window.__xhrAnswers || []).length >= n, n, { timeout: timeoutMs });
  const all = await page.evaluate((n) => window.__xhrAnswers.splice(0, n), n);
  return all.map((a) => {
    let json = null;
    try {
      json = JSON.parse(a.body);
    } catch {
      /* stays null */
    }
    return { status: a.status, json, body: a.body };
  });
}

// axe-core on the page as it is now: fails on any serious or critical violation.
async function axeCheck(page, what) {
  await check(`axe-core: no serious or critical accessibility violation (${what})`, async () => {
    if (!(await page.evaluate(() => typeof window.axe === 'object'))) await page.evaluate(AXE);
    const v = await page.evaluate(async () => {
      const r = await window.axe.run(document, { resultTypes: ['violations'] });
      return r.violations.map((x) => ({
        id: x.id,
        impact: x.impact,
        nodes: x.nodes.length,
        target: String(x.nodes[0] && x.nodes[0].target),
      }));
    });
    const bad = v.filter((x) => x.impact === 'serious' || x.impact === 'critical');
    assert(!bad.length, bad.map((x) => `${x.impact} ${x.id} x${x.nodes} at ${x.target}`).join('; '));
    return v.length ? `minor/moderate only: ${v.map((x) => `${x.impact} ${x.id}`).join(', ')}` : 'no violation';
  });
}

// Files of `bytes` random bytes on disk (Chromium reads them itself; a buffer would cross the
// DevTools protocol as base64).
function makeFiles(names, bytes) {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msrpcast-upload-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  return names.map((name) => {
    const buf = crypto.randomBytes(bytes);
    const file = path.join(dir, name);
    fs.writeFileSync(file, buf);
    return { name, file, bytes, sha1: sha1(buf) };
  });
}

async function pickConference(page, conf) {
  await page.selectOption('#conference', conf);
  await page.waitForFunction((c) => document.getElementById('conference').value === c, conf);
}

async function send(page, conf, files) {
  await pickConference(page, conf);
  await page.setInputFiles('#file', files.map((f) => f.file));
  await page.waitForSelector('#send:not([disabled])', { timeout: 5000 });
  const t0 = Date.now();
  await page.click('#send');
  return t0;
}

// Upload throughput of the page's requests (bytes/s; 0: no limit), through the DevTools
// protocol's network emulation.
async function throttle(cdp, bytesPerSecond) {
  await cdp.send('Network.enable');
  await cdp.send('Network.emulateNetworkConditions', {
    offline: false,
    latency: 0,
    downloadThroughput: -1,
    uploadThroughput: bytesPerSecond || -1,
  });
}

async function login(page, wantSecure) {
  await check('page loads and asks for the token', async () => {
    const res = await page.goto(BASE + '/');
    assert(res && res.status() === 200, `GET / answered ${res && res.status()}`);
    await page.waitForSelector('#login-section:not(.hidden)', { timeout: 10000 });
    const hsts = res.headers()['strict-transport-security'];
    if (wantSecure) assert(hsts && /max-age=\d+/.test(hsts), `Strict-Transport-Security: ${hsts}`);
    else assert(!hsts, `Strict-Transport-Security over plain HTTP: ${hsts}`);
    return `title "${await page.title()}"${hsts ? `, Strict-Transport-Security: ${hsts}` : ''}`;
  });
  await check('a wrong token is refused', async () => {
    await page.fill('#token', 'not-the-token');
    await page.click('#login');
    await page.waitForFunction(() => /wrong token/i.test(document.getElementById('status').textContent), null, {
      timeout: 10000,
    });
    assert(await page.isHidden('#app'), 'the app section is visible after a wrong token');
    return await page.textContent('#status');
  });
  await shot(page, `${phase === 'https' ? 'https-' : ''}login`);
  await check('logging in with the token shows the conferences', async () => {
    await page.fill('#token', TOKEN);
    await page.click('#login');
    await page.waitForSelector('#app:not(.hidden)', { timeout: 10000 });
    await page.waitForSelector('#conference option[value="4711"]', { state: 'attached', timeout: 10000 });
    const label = await page.textContent('#conference option[value="4711"]');
    assert(/3 participants/.test(label), `option reads "${label}"`);
    const cookies = await page.context().cookies(BASE);
    const session = cookies.find((c) => c.httpOnly);
    assert(session, `no HttpOnly cookie after login: ${JSON.stringify(cookies.map((c) => c.name))}`);
    assert(session.sameSite === 'Strict', `cookie ${session.name} has SameSite=${session.sameSite}`);
    assert(session.secure === wantSecure, `cookie ${session.name} Secure=${session.secure}`);
    return `option "${label}", cookie ${session.name} HttpOnly SameSite=Strict${session.secure ? ' Secure' : ''}`;
  });
}

async function httpPhase(context) {
  const page = context.pages()[0] || (await context.newPage());
  await page.addInitScript(recordXhrAnswers);
  page.on('pageerror', (e) => record(false, 'no JavaScript error on the page', e.message));
  const cdp = await context.newCDPSession(page);
  await login(page, false);

  await check('idle: conference 4711 chosen, no files yet', async () => {
    await pickConference(page, '4711');
    await page.waitForSelector('#files-empty:not(.hidden)');
    assert(await page.isDisabled('#send'), 'Send is enabled without a file');
    assert(await page.isHidden('#queue-box'), 'the queue is shown while empty');
    return await page.textContent('#files-empty');
  });
  await shot(page, 'idle');
  await axeCheck(page, 'idle, light');

  // One 20 MiB file to three participants; the upload throttled to 8 MiB/s so it is seen.
  const [big] = makeFiles(['browser test 20MiB ü.bin'], 20 * MiB);
  let bigId = null;
  await throttle(cdp, 8 * MiB);
  const t0 = await send(page, '4711', [big]);
  await check('while uploading: the upload bar, rate and time left, and a card with bars', async () => {
    await page.waitForFunction(
      () => {
        const p = document.getElementById('upload-progress');
        return !document.getElementById('current').classList.contains('hidden') && p.value >= 10 && p.value <= 90 &&
          /\/s · .+ left/.test(document.getElementById('upload-text').textContent) &&
          document.querySelector('article.transfer[data-state="uploading"] tr.delivery');
      },
      null,
      { timeout: 30000, polling: 50 },
    );
    await shot(page, 'uploading');
    const text = await page.textContent('#upload-text');
    bigId = await page.$eval('article.transfer', (a) => a.getAttribute('data-transfer'));
    const rs = await rows(page, bigId);
    assert(await page.isEnabled('#cancel'), 'Cancel upload is disabled while uploading');
    return `${text}; transfer ${bigId}: ${describe(rs)}`;
  });
  await throttle(cdp, 0);
  await check('all three deliveries reach "done" with 100% bars and an average rate', async () => {
    const [a] = await xhrAnswers(page, 1, 120000);
    assert(a.status === 201 && a.json && a.json.transfer != null, `upload answered ${a.status} ${a.body}`);
    assert(String(a.json.transfer) === bigId, `card ${bigId}, upload answered transfer ${a.json.transfer}`);
    const rs = await waitRows(page, bigId, 3, (r) => r.state === 'done', 'all done', 120000);
    assert(rs.every((r) => r.percent === 100 && r.bar === 100), `bars: ${rs.map((r) => r.bar)}`);
    assert(rs.every((r) => /20\.0 MiB \/ 20\.0 MiB/.test(r.bytes)), `bytes: ${rs.map((r) => r.bytes)}`);
    assert(rs.every((r) => /\/s avg$/.test(r.rate)), `rates: ${rs.map((r) => r.rate)}`);
    assert(rs.every((r) => r.outcome === 'delivered'), `outcomes: ${rs.map((r) => r.outcome)}`);
    await page.waitForFunction(() => /delivered to all 3 participants/.test(document.getElementById('status').textContent));
    const meta = await page.textContent(`article.transfer[data-transfer="${bigId}"] .meta`);
    assert(/sent from this page/.test(meta), `card meta "${meta}"`);
    assert(await page.isDisabled('#cancel'), 'Cancel upload is still enabled');
    return `${ms(t0)} from the click; ${rs.map((r) => r.rate).join(', ')}; "${meta}"`;
  });
  await shot(page, 'done');
  for (const name of ['good1', 'good2', 'good3']) {
    await check(`${name} saved the 20 MiB file with the same SHA-1`, async () => {
      const hit = hasCopy(name, big.sha1, big.bytes);
      return `${hit.file}, sha1 ${big.sha1.slice(0, 12)}…`;
    });
  }

  // Three files queued at once; the upload throttled to 2 MiB/s so the queue is seen.
  const three = makeFiles(['queued one.bin', 'queued two.bin', 'queued three.bin'], 4 * MiB);
  await throttle(cdp, 2 * MiB);
  await send(page, '4711', three);
  await check('three files sent at once: one uploads, two wait in the queue', async () => {
    await page.waitForFunction(
      () => document.querySelectorAll('#queue li[data-state="waiting"]').length === 2 &&
        document.getElementById('upload-progress').value > 0 &&
        document.querySelector('article.transfer[data-state="uploading"] tr.delivery'),
      null,
      { timeout: 30000, polling: 50 },
    );
    await shot(page, 'queued');
    const items = await page.$$eval('#queue li', (lis) => lis.map((l) => l.textContent));
    assert(items[0].startsWith('queued two.bin') && items[1].startsWith('queued three.bin'), JSON.stringify(items));
    return `${await page.textContent('#upload-label')}; waiting: ${items.length}`;
  });
  await throttle(cdp, 0);
  await check('the three queued files are uploaded one after the other and delivered', async () => {
    const answers = await xhrAnswers(page, 3, 120000);
    assert(answers.every((a) => a.status === 201), `answers ${answers.map((a) => a.status)}`);
    const ids = answers.map((a) => a.json.transfer);
    assert(ids[0] < ids[1] && ids[1] < ids[2], `transfer ids ${ids}`);
    for (const id of ids) await waitRows(page, id, 3, (r) => r.state === 'done', 'all done', 120000);
    await page.waitForSelector('#queue-box.hidden', { state: 'attached' });
    for (const f of three) for (const name of ['good1', 'good2', 'good3']) hasCopy(name, f.sha1, f.bytes);
    const cards = await page.$$eval('article.transfer', (as) => as.map((a) => a.getAttribute('data-transfer')));
    assert(cards.length === 4 && cards[0] === String(ids[2]), `cards (newest first): ${cards}`);
    return `transfers ${ids.join(', ')}; every receiver has all three (SHA-1)`;
  });

  // History: a reload shows the conference's four files from GET /api/conferences/{id}/transfers.
  await check('after a reload the page lists the conference\'s files from the history API', async () => {
    await page.reload();
    await page.waitForSelector('#app:not(.hidden)');
    await pickConference(page, '4711');
    await page.waitForFunction(() => document.querySelectorAll('article.transfer').length === 4, null, {
      timeout: 10000,
    });
    const res = await page.request.get(`${BASE}/api/conferences/4711/transfers`);
    assert(res.status() === 200, `history API answered ${res.status()}`);
    const h = await res.json();
    assert(h.transfers.length === 4 && h.transfers.every((t) => t.via === 'http'), JSON.stringify(h).slice(0, 300));
    const states = await page.$$eval('article.transfer .tstate', (s) => s.map((x) => x.textContent));
    assert(states.every((s) => s === 'delivered to all 3 participants'), JSON.stringify(states));
    return `4 cards: ${states[0]}`;
  });

  // Chosen recipients (issue 13): check one participant's box, send; only that one gets the file.
  await check('check boxes: a file for one chosen participant reaches only that one', async () => {
    await pickConference(page, '4711');
    await page.waitForSelector('#recipients #to-all:checked');
    const keys = await page.$$eval('#recipients input.to-one', (bs) => bs.map((b) => b.getAttribute('data-key')));
    assert(keys.length === 3, `boxes for ${JSON.stringify(keys)}`);
    await page.check(`#recipients input.to-one[data-key="${keys[1]}"]`);
    assert(!(await page.isChecked('#to-all')), '"everyone" still checked with a participant chosen');
    const [f] = makeFiles(['for one.bin'], MiB);
    await send(page, '4711', [f]);
    const [a] = await xhrAnswers(page, 1, 60000);
    assert(a.status === 201, `upload answered ${a.status} ${a.body}`);
    const id = a.json.transfer;
    const rs = await waitRows(page, id, 1, (r) => r.state === 'done', 'done', 60000);
    assert(rs[0].participant === keys[1], `delivered to ${rs[0].participant}, chose ${keys[1]}`);
    const meta = await page.textContent(`article.transfer[data-transfer="${id}"] .meta`);
    assert(/ · for /.test(meta), `card meta "${meta}"`);
    const have = ['good1', 'good2', 'good3'].filter((n) => received(n).some((x) => x.sha1 === f.sha1));
    assert(have.length === 1, `receivers with the file: ${JSON.stringify(have)}`);
    hasCopy(have[0], f.sha1, f.bytes);
    await page.check('#to-all');
    const still = await page.$$eval('#recipients input.to-one:checked', (bs) => bs.length);
    assert(still === 0, `${still} boxes still checked after "everyone"`);
    return `transfer ${id} to ${keys[1]} only (${have[0]}); "${meta}"`;
  });

  // Slow participants: bars move, with rate and time left; then Stop.
  const [slow] = makeFiles(['slow 20MiB.bin'], 20 * MiB);
  await send(page, '4713', [slow]);
  let slowId = null;
  await check('slow participants: bars, rate and time left while sending', async () => {
    await page.waitForFunction(
      () => [...document.querySelectorAll('article.transfer tr.delivery')].filter((tr) =>
        tr.getAttribute('data-state') === 'sending' && Number(tr.getAttribute('data-percent')) >= 8 &&
        /\/s$/.test(tr.querySelector('td.rate').textContent) && /\d+ (s|min)/.test(tr.querySelector('td.eta').textContent),
      ).length === 2,
      null,
      { timeout: 60000, polling: 100 },
    );
    slowId = await page.$eval('article.transfer', (a) => a.getAttribute('data-transfer'));
    const rs = await rows(page, slowId);
    await shot(page, 'sending');
    return rs.map((r) => `${r.participant} ${r.percent}% ${r.rate} ${r.eta} left`).join('; ');
  });
  await axeCheck(page, 'sending, light');
  await page.emulateMedia({ colorScheme: 'dark' });
  await check('dark mode: prefers-color-scheme dark gives a dark page', async () => {
    const bg = await page.evaluate(() => getComputedStyle(document.body).backgroundColor);
    const [r, g, b] = bg.match(/\d+/g).map(Number);
    assert(r + g + b < 150, `body background ${bg}`);
    await shot(page, 'dark');
    return `body background ${bg}`;
  });
  await axeCheck(page, 'sending, dark');
  await page.emulateMedia({ colorScheme: 'light' });
  await check('Stop cancels the transfer: both rows "cancelled", with how far they got', async () => {
    const tc = Date.now();
    await page.click(`article.transfer[data-transfer="${slowId}"] button.stop`);
    const rs = await waitRows(page, slowId, 2, (r) => r.state === 'cancelled', 'all cancelled', 30000);
    assert(rs.every((r) => /^cancelled after \d+(\.\d)? [KM]iB$/.test(r.outcome)), `outcomes ${rs.map((r) => r.outcome)}`);
    await page.waitForFunction(() => /cancelled/.test(document.getElementById('status').textContent));
    const res = await page.request.get(`${BASE}/api/transfers/${slowId}`);
    const t = await res.json();
    assert(t.state === 'cancelled' && t.deliveries.every((d) => d.state === 'cancelled'), `API: ${t.state}`);
    return `${ms(tc)} after the click: ${rs.map((r) => r.outcome).join(', ')}`;
  });
  await shot(page, 'cancelled');
  await check('no slow receiver holds a complete copy of the cancelled file', async () => {
    await page.waitForTimeout(1000);
    const hits = ['slow1', 'slow2'].filter((n) => received(n).some((f) => f.sha1 === slow.sha1));
    assert(!hits.length, `complete copies at ${hits}`);
    return 'slow1, slow2 checked';
  });

  // A participant lost mid-file: its failure in words, the other one done.
  const [mixed] = makeFiles(['mixed 20MiB.bin'], 20 * MiB);
  await send(page, '4712', [mixed]);
  await check('a connection lost mid-file reads "connection lost after N MiB"', async () => {
    await page.waitForSelector('article.transfer');
    const id = await page.$eval('article.transfer', (a) => a.getAttribute('data-transfer'));
    const rs = await waitRows(page, id, 2, (r) => FINAL.has(r.state), 'both final', 120000);
    const ok = rs.find((r) => r.state === 'done');
    const lost = rs.find((r) => r.state === 'failed');
    assert(ok && lost, describe(rs));
    const m = /^connection lost after (\d+\.\d) MiB$/.exec(lost.outcome);
    assert(m && Number(m[1]) > 0 && Number(m[1]) <= 12.3, `outcome "${lost.outcome}"`);
    assert(lost.detail.length > 0, 'no detail under the outcome');
    await page.waitForFunction(() => /1 of 2 deliveries did not succeed/.test(document.getElementById('status').textContent));
    const st = await page.textContent(`article.transfer[data-transfer="${id}"] .tstate`);
    assert(st === 'delivered to 1 of 2 participants', `card says "${st}"`);
    hasCopy('mixed-ok', mixed.sha1, mixed.bytes);
    return `"${lost.outcome}" (${lost.detail}); card: ${st}`;
  });
  await shot(page, 'failed');
  await axeCheck(page, 'failed, light');

  // The wording of every kind of failure, from the API's fields (a history answer made here:
  // SIP declines cannot happen with `msrpcast serve`, which has no SIP).
  await check('failure reasons in words for each way a delivery ends', async () => {
    const p2 = await context.newPage();
    const d = (id, participant, state, extra) => ({
      id, participant, state, bytes: null, total: null, percent: null, reason: null, code: null,
      ended_in: null, created_at_ms: 1764690001000, updated_at_ms: 1764690002000, first_byte_at_ms: null, ...extra,
    });
    const made = {
      conference: '4711',
      transfers: [{
        id: 900001, conference: '4711', name: 'made up.pdf', content_type: 'application/pdf', size: 20 * MiB,
        declared_size: 20 * MiB, state: 'complete', reason: null, sha1: 'a'.repeat(40),
        created_at_ms: 1764690001000, updated_at_ms: 1764690001000, via: 'participant', sender: 'p2',
        deliveries: [
          d(1, 'p1', 'failed', { reason: 'file INVITE rejected with 486', code: 486, ended_in: 'offering' }),
          d(2, 'p3', 'failed', { reason: 'no answer within 30000 ms', code: 408, ended_in: 'offering' }),
          d(3, 'x4', 'failed', { reason: 'connection closed by the participant after 12897484 of 20971520 bytes were confirmed', bytes: 12897484, ended_in: 'sending' }),
          d(4, 'x5', 'failed', { reason: 'participant answered 481', code: 481, bytes: 1048576, ended_in: 'sending' }),
          d(5, 'x6', 'failed', { reason: 'cannot connect: Connection refused (os error 111)', ended_in: 'connecting' }),
        ],
      }],
    };
    await p2.route('**/api/conferences/4711/transfers', (route) =>
      route.fulfill({ status: 200, contentType: 'application/json', body: JSON.stringify(made) }));
    await p2.goto(BASE + '/?conference=4711');
    await p2.waitForSelector('article.transfer[data-transfer="900001"] tr.delivery[data-participant="x6"]');
    const rs = await rows(p2, 900001);
    const want = {
      p1: 'declined: 486 Busy Here',
      p3: 'no answer: 408 Request Timeout',
      x4: 'connection lost after 12.3 MiB',
      x5: 'refused by the participant after 1.0 MiB: 481 Session Does Not Exist',
      x6: 'could not connect',
    };
    for (const r of rs) assert(r.outcome === want[r.participant], `${r.participant}: "${r.outcome}", want "${want[r.participant]}"`);
    const meta = await p2.textContent('article.transfer[data-transfer="900001"] .meta');
    assert(/from /.test(meta), `sender not shown: "${meta}"`);
    await p2.close();
    return rs.map((r) => `"${r.outcome}"`).join(', ') + `; "${meta}"`;
  });

  await check('a 360 px wide phone screen shows the page without sideways scrolling', async () => {
    await pickConference(page, '4711');
    await page.waitForSelector('article.transfer tr.delivery');
    await page.setViewportSize({ width: 360, height: 740 });
    await page.waitForTimeout(200);
    await shot(page, 'phone');
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(w <= 360, `document is ${w} px wide`);
    const box = await page.locator('tr.delivery td.state').first().boundingBox();
    assert(box && box.width > 0 && box.x >= 0 && box.x + box.width <= 360, `state cell at ${JSON.stringify(box)}`);
    return `scrollWidth ${w}`;
  });
}

async function httpsPhase() {
  // Without the test CA in its NSS database, Chromium must refuse the page: the trust below
  // comes from that database, not from an ignored error.
  await check('a browser without the test CA refuses the certificate', async () => {
    const plain = await launch(env('PLAIN_HOME'));
    try {
      const page = plain.pages()[0] || (await plain.newPage());
      let err = null;
      await page.goto(BASE + '/').catch((e) => (err = e.message.split('\n')[0]));
      assert(err && /ERR_CERT_AUTHORITY_INVALID|ERR_CERT/.test(err), `page loaded or other error: ${err}`);
      return err;
    } finally {
      await plain.close().catch(() => {});
    }
  });
  const context = await launch(env('TRUST_HOME'));
  try {
    const page = context.pages()[0] || (await context.newPage());
    await page.addInitScript(recordXhrAnswers);
    page.on('pageerror', (e) => record(false, 'no JavaScript error on the page', e.message));
    await login(page, true);
    const [file] = makeFiles(['over https.bin'], 8 * MiB);
    await send(page, '4711', [file]);
    await check('over HTTPS: the upload is delivered to all three', async () => {
      const [a] = await xhrAnswers(page, 1, 60000);
      assert(a.status === 201, `upload answered ${a.status} ${a.body}`);
      const id = a.json.transfer;
      await waitRows(page, id, 3, (r) => r.state === 'done', 'all done', 120000);
      for (const name of ['good1', 'good2', 'good3']) hasCopy(name, file.sha1, file.bytes);
      const sec = await page.evaluate(() => window.isSecureContext && location.protocol);
      assert(sec === 'https:', `secure context: ${sec}`);
      return `transfer ${id}, SHA-1 at all three receivers`;
    });
    await shot(page, 'https-done');
  } finally {
    await context.close().catch(() => {});
  }
}

async function main() {
  if (phase !== 'http' && phase !== 'https') throw new Error('usage: node browser.test.mjs http|https');
  fs.mkdirSync(ART, { recursive: true });
  // No stale picture from an earlier run may pass for this one's.
  for (const f of fs.readdirSync(ART)) {
    const mine = phase === 'https' ? f.startsWith('browser-https-') : f.startsWith('browser-') && !f.startsWith('browser-https-');
    if (mine && f.endsWith('.png')) fs.rmSync(path.join(ART, f), { force: true });
  }
  const t0 = Date.now();
  try {
    if (phase === 'http') {
      const context = await launch(null);
      try {
        await httpPhase(context);
      } finally {
        await context.close().catch(() => {});
      }
    } else {
      await httpsPhase();
    }
  } finally {
    cleanups.forEach((f) => f());
  }
  console.log(`${phase}: ${failures ? failures + ' failed' : 'all passed'} in ${ms(t0)}; screenshots: ${shots.join(' ')}`);
  return failures;
}

main().then(
  (f) => process.exit(f ? 1 : 0),
  (e) => {
    record(false, 'the test ran to its end', e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : String(e));
    process.exit(1);
  },
);
