// The upload page in a real browser: headless Debian Chromium driven by playwright-core.
// Started by run.sh (which starts `msrpcast serve` and the receivers): `node browser.test.mjs
// upload|cancel`. Prints one line per check (`ok ...` / `FAIL ...`), appends the same lines to
// $RESULTS, and exits non-zero when a check failed.
//
// Environment (set by run.sh): BASE_URL, TOKEN, CONFERENCE, ARTIFACTS, CHROMIUM,
// RECEIVER_DIRS and RECEIVER_LOGS (colon separated, one per receiver), RESULTS.
import { chromium } from 'playwright-core';
import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';

const env = (k) => {
  const v = process.env[k];
  if (!v) throw new Error(`environment variable ${k} is not set (run tests/browser/run.sh)`);
  return v;
};
const BASE = env('BASE_URL');
const TOKEN = env('TOKEN');
const CONF = env('CONFERENCE');
const ART = env('ARTIFACTS');
const RESULTS = env('RESULTS');
const DIRS = env('RECEIVER_DIRS').split(':');
const LOGS = env('RECEIVER_LOGS').split(':');
const EXE = process.env.CHROMIUM || '/usr/bin/chromium';
const FILE_BYTES = 20 * 1024 * 1024;
const phase = process.argv[2];

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

// Row states, in document order: [{participant, state, bytes, percent, outcome}].
async function rows(page) {
  return page.$$eval('tr.delivery', (trs) =>
    trs.map((tr) => ({
      participant: tr.getAttribute('data-participant'),
      state: (tr.querySelector('.state') || {}).textContent || '',
      bytes: (tr.querySelector('.bytes') || {}).textContent || '',
      percent: (tr.querySelector('.percent') || {}).textContent || '',
      outcome: (tr.querySelector('.outcome') || {}).textContent || '',
    })),
  );
}
const describe = (rs) => rs.map((r) => `${r.state}${r.outcome ? `:${r.outcome}` : ''}`).join(',') || 'no rows';

// Wait until every one of `n` rows shows `state`; fails early when a row reaches another final
// state. Returns the rows.
async function waitRows(page, n, state, timeoutMs) {
  const final = new Set(['done', 'failed', 'cancelled']);
  const end = Date.now() + timeoutMs;
  let rs = [];
  for (;;) {
    rs = await rows(page);
    if (rs.length === n && rs.every((r) => r.state === state)) return rs;
    const wrong = rs.find((r) => final.has(r.state) && r.state !== state);
    if (wrong) throw new Error(`a row ended ${wrong.state} (${wrong.outcome}); rows: ${describe(rs)}`);
    if (Date.now() > end) throw new Error(`not all ${n} rows ${state} after ${timeoutMs} ms: ${describe(rs)}`);
    await page.waitForTimeout(50);
  }
}

// Sizes and SHA-1s of the files in a receiver's directory.
function received(dir) {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).map((f) => {
    const data = fs.readFileSync(path.join(dir, f));
    return { file: f, bytes: data.length, sha1: sha1(data) };
  });
}

async function launch() {
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'msrpcast-chromium-'));
  const context = await chromium.launchPersistentContext(userDataDir, {
    executablePath: EXE,
    headless: true,
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
    viewport: { width: 1024, height: 900 },
  });
  return { context, userDataDir };
}

// The answer to the upload cannot be read through the DevTools protocol: a 20 MiB request body
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

async function login(page) {
  await check('page loads and asks for the token', async () => {
    const res = await page.goto(BASE + '/');
    assert(res && res.status() === 200, `GET / answered ${res && res.status()}`);
    await page.waitForSelector('#login-section:not(.hidden)', { timeout: 10000 });
    return `title "${await page.title()}"`;
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
  if (phase === 'upload') await page.screenshot({ path: path.join(ART, 'browser-login.png'), fullPage: true });
  await check('logging in with the token shows conference ' + CONF, async () => {
    await page.fill('#token', TOKEN);
    await page.click('#login');
    await page.waitForSelector('#app:not(.hidden)', { timeout: 10000 });
    await page.waitForSelector(`#conference option[value="${CONF}"]`, { state: 'attached', timeout: 10000 });
    const label = await page.textContent(`#conference option[value="${CONF}"]`);
    assert(/3 participants/.test(label), `option reads "${label}"`);
    const cookies = await page.context().cookies(BASE);
    const session = cookies.find((c) => c.httpOnly);
    assert(session, `no HttpOnly cookie after login: ${JSON.stringify(cookies.map((c) => c.name))}`);
    assert(session.sameSite === 'Strict', `cookie ${session.name} has SameSite=${session.sameSite}`);
    return `option "${label}", cookie ${session.name} HttpOnly SameSite=Strict`;
  });
}

// Choose the conference and a generated file, click Send; returns the buffer and a promise of
// the POST's JSON answer.
async function startUpload(page, name) {
  const buf = crypto.randomBytes(FILE_BYTES);
  // From a file on disk: Chromium reads it itself (a 20 MiB buffer would cross the DevTools
  // protocol as base64, which took up to 30 s here).
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'msrpcast-upload-'));
  const file = path.join(dir, name);
  fs.writeFileSync(file, buf);
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  await page.selectOption('#conference', CONF);
  await page.setInputFiles('#file', file);
  await page.waitForSelector('#send:not([disabled])', { timeout: 5000 });
  // The POST's answer, as the page's own XMLHttpRequest saw it (see recordXhrAnswers).
  const answer = page
    .waitForFunction(() => window.__xhrAnswers && window.__xhrAnswers.length > 0, null, { timeout: 60000 })
    .then(() => page.evaluate(() => window.__xhrAnswers.shift()))
    .then((a) => {
      let json = null;
      try {
        json = JSON.parse(a.body);
      } catch {
        /* stays null */
      }
      return { status: a.status, json, body: a.body };
    })
    .catch((e) => ({ status: 0, error: e.message.split('\n')[0] }));
  const t0 = Date.now();
  await page.click('#send');
  return { buf, answer, t0 };
}

async function uploadPhase(page) {
  await login(page);
  const { buf, answer, t0 } = await startUpload(page, 'browser test 20MiB ü.bin');
  const digest = sha1(buf);
  let midShot = false;
  await check('all three deliveries reach "done"', async () => {
    // One screenshot while work is still going on, if the page is caught in that state.
    const end = Date.now() + 120000;
    for (;;) {
      const rs = await rows(page);
      if (rs.length === 3 && rs.every((r) => r.state === 'done')) break;
      const up = await page.$eval('#upload-progress', (p) => p.value);
      if (!midShot && (rs.some((r) => r.state !== 'done') || (up > 0 && up < 100))) {
        await page.screenshot({ path: path.join(ART, 'browser-upload-midway.png'), fullPage: true });
        midShot = `upload ${up}%, rows ${describe(rs)}`;
      }
      const bad = rs.find((r) => r.state === 'failed' || r.state === 'cancelled');
      if (bad) throw new Error(`a row ended ${bad.state}: ${describe(rs)}`);
      if (Date.now() > end) throw new Error(`after 120 s: ${describe(rs)}`);
      await page.waitForTimeout(20);
    }
    return `${ms(t0)} from the click; mid-way screenshot ${midShot ? `at ${midShot}` : 'not caught (too fast)'}`;
  });
  await page.screenshot({ path: path.join(ART, 'browser-upload-done.png'), fullPage: true });
  await check('the upload was answered 201 with a transfer id', async () => {
    const a = await answer;
    assert(a.status === 201, `status ${a.status} ${a.error || JSON.stringify(a.json)}`);
    assert(a.json && a.json.transfer, `no "transfer" in ${JSON.stringify(a.json)}`);
    return `transfer ${a.json.transfer}`;
  });
  await check('rows show 100% and the status says delivered to all', async () => {
    const rs = await rows(page);
    assert(rs.every((r) => r.percent === '100%'), `percent: ${rs.map((r) => r.percent)}`);
    assert(rs.every((r) => /20\.0 MiB \/ 20\.0 MiB/.test(r.bytes)), `bytes: ${rs.map((r) => r.bytes)}`);
    const status = await page.textContent('#status');
    assert(/Delivered to all 3 participants/.test(status), `status "${status}"`);
    const up = await page.$eval('#upload-progress', (p) => p.value);
    assert(up === 100, `upload progress ${up}`);
    assert(await page.isDisabled('#cancel'), 'Cancel is still enabled');
    assert(await page.isEnabled('#send'), 'Send is not enabled again');
    return status;
  });
  for (let i = 0; i < DIRS.length; i++) {
    await check(`receiver ${i + 1} saved the file with the same SHA-1`, async () => {
      const files = received(DIRS[i]);
      const hit = files.find((f) => f.sha1 === digest);
      assert(hit, `want ${digest}, have ${JSON.stringify(files)}`);
      assert(hit.bytes === FILE_BYTES, `${hit.bytes} bytes`);
      const log = fs.readFileSync(LOGS[i], 'utf8');
      const line = log.split('\n').find((l) => l.startsWith('received ') && l.split(' ')[3] === digest);
      assert(line, `no "received ... ${digest}" line in its output: ${JSON.stringify(log)}`);
      return `${hit.file}, ${hit.bytes} bytes, sha1 ${digest.slice(0, 12)}…`;
    });
  }
  await check('a 360 px wide phone screen shows the page without sideways scrolling', async () => {
    await page.setViewportSize({ width: 360, height: 740 });
    await page.waitForTimeout(200);
    await page.screenshot({ path: path.join(ART, 'browser-phone.png'), fullPage: true });
    const w = await page.evaluate(() => document.documentElement.scrollWidth);
    assert(w <= 360, `document is ${w} px wide`);
    // Each row's state must still be readable (visible, not clipped to nothing).
    const box = await page.locator('tr.delivery .state').first().boundingBox();
    assert(box && box.width > 0 && box.x >= 0 && box.x + box.width <= 360, `state cell at ${JSON.stringify(box)}`);
    return `scrollWidth ${w}`;
  });
}

async function cancelPhase(page) {
  await login(page);
  const { buf, answer, t0 } = await startUpload(page, 'cancel-me.bin');
  const digest = sha1(buf);
  await check('deliveries to the slow receivers are sending', async () => {
    await page.waitForFunction(
      () =>
        [...document.querySelectorAll('tr.delivery')].some(
          (tr) => tr.querySelector('.state').textContent === 'sending' && !/^0%/.test(tr.querySelector('.percent').textContent),
        ),
      null,
      { timeout: 30000, polling: 50 },
    );
    const a = await answer;
    assert(a.status === 201, `upload answered ${a.status}`);
    const rs = await rows(page);
    assert(!rs.some((r) => r.state === 'done'), `already done: ${describe(rs)}`);
    await page.screenshot({ path: path.join(ART, 'browser-cancel-sending.png'), fullPage: true });
    assert(await page.isEnabled('#cancel'), 'Cancel is disabled while sending');
    return `${ms(t0)} from the click: ${rs.map((r) => `${r.state} ${r.percent}`).join(', ')}`;
  });
  const tc = Date.now();
  await page.click('#cancel');
  let cancelled = false;
  await check('every row shows "cancelled" after Cancel', async () => {
    const rs = await waitRows(page, 3, 'cancelled', 30000);
    cancelled = true;
    return `${ms(tc)} after the click; progress then ${rs.map((r) => r.percent).join(', ')}`;
  });
  await page.screenshot({ path: path.join(ART, 'browser-cancelled.png'), fullPage: true });
  await check('the status says cancelled and Send is enabled again', async () => {
    const status = await page.textContent('#status');
    assert(/cancelled/i.test(status), `status "${status}"`);
    assert(await page.isDisabled('#cancel'), 'Cancel is still enabled');
    assert(await page.isEnabled('#send'), 'Send is disabled');
    return status;
  });
  await check('the API reports the transfer and its deliveries cancelled', async () => {
    const a = await answer;
    const id = a.json && a.json.transfer;
    assert(id, `no transfer id: ${JSON.stringify(a)}`);
    const res = await page.request.get(`${BASE}/api/transfers/${encodeURIComponent(id)}`);
    assert(res.status() === 200, `GET /api/transfers/${id}: ${res.status()}`);
    const t = await res.json();
    assert(t.state === 'cancelled', `transfer state ${t.state}`);
    const ds = (t.deliveries || []).map((d) => d.state);
    assert(ds.length === 3 && ds.every((s) => s === 'cancelled'), `deliveries ${ds}`);
    return `transfer ${id}: ${t.state}, deliveries ${ds.join(',')}`;
  });
  if (cancelled) {
    await check('no receiver holds a complete copy of the cancelled file', async () => {
      // Give a receiver that would (wrongly) finish the message a moment to do so.
      await page.waitForTimeout(1000);
      const hits = DIRS.filter((d) => received(d).some((f) => f.sha1 === digest));
      assert(hits.length === 0, `complete copies in ${hits}`);
      return `${DIRS.length} receivers checked`;
    });
  }
}

async function main() {
  if (phase !== 'upload' && phase !== 'cancel') throw new Error('usage: node browser.test.mjs upload|cancel');
  fs.mkdirSync(ART, { recursive: true });
  // No stale picture from an earlier run may pass for this one's.
  const shots = {
    upload: ['login', 'upload-midway', 'upload-done', 'phone'],
    cancel: ['cancel-sending', 'cancelled'],
  };
  for (const s of shots[phase]) fs.rmSync(path.join(ART, `browser-${s}.png`), { force: true });
  const t0 = Date.now();
  const { context, userDataDir } = await launch();
  try {
    const page = context.pages()[0] || (await context.newPage());
    await page.addInitScript(recordXhrAnswers);
    page.on('pageerror', (e) => record(false, 'no JavaScript error on the page', e.message));
    if (phase === 'upload') await uploadPhase(page);
    else await cancelPhase(page);
  } finally {
    await context.close().catch(() => {});
    fs.rmSync(userDataDir, { recursive: true, force: true });
    cleanups.forEach((f) => f());
  }
  console.log(`${phase}: ${failures ? failures + ' failed' : 'all passed'} in ${ms(t0)}`);
  return failures;
}

main().then(
  (f) => process.exit(f ? 1 : 0),
  (e) => {
    record(false, 'the test ran to its end', e && e.stack ? e.stack.split('\n').slice(0, 3).join(' | ') : String(e));
    process.exit(1);
  },
);
