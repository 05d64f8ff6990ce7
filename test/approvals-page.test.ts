import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { chromium, type Browser } from 'playwright-core';
import { request } from 'undici';
import { createTopics, getInfra, readAudit, readTopic, startGateway, type Infra } from './helpers/infra.ts';
import { testConfig } from './helpers/config.ts';
import { pendingFor, rule } from './helpers/approvals.ts';
import { CHROMIUM, CHROMIUM_ARGS, ensureChromiumInstalled } from '../src/dev/chromium.ts';
import type { Gateway } from '../src/gateway.ts';

// The approvers' web page in a real headless Chromium (Debian's, driven by playwright-core):
// carol pastes her token, sees alice's held write and approves it with the button; the
// write that was waiting goes through to the real broker.

const run = `${process.pid}-${Date.now() % 100000}`;
const TOPIC = `payouts.page-${run}`;
let infra: Infra;
let gateway: Gateway;
let spoolDir: string;
let adminUrl: string;
let browser: Browser;

before(async () => {
  await ensureChromiumInstalled();
  infra = await getInfra();
  await createTopics(infra.kafka, [TOPIC]);
  const made = testConfig(infra);
  spoolDir = made.spoolDir;
  made.config.policy.approvals = [rule('page-writes', ['payouts.page-*'], { maxWait: 120_000 })];
  gateway = await startGateway(made.config);
  adminUrl = `http://127.0.0.1:${gateway.addresses.admin!.port}`;
  browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS });
});

after(() => browser?.close());

test('an approver approves a held write with the page button; the write goes through', async () => {
  const held = request(`http://127.0.0.1:${gateway.addresses.http!.port}/v3/clusters/local/topics/${TOPIC}/records`, {
    method: 'POST',
    headers: { authorization: `Bearer ${await infra.idp.token('alice')}`, 'content-type': 'application/json', 'x-streamgate-justification': 'month-end <b>payout</b>' },
    body: JSON.stringify({ value: { type: 'JSON', data: { payout: 99 } } }),
  });
  const carol = await infra.idp.token('carol');
  const pending = await pendingFor(adminUrl, carol, TOPIC);

  const page = await browser.newPage();
  const problems: string[] = [];
  page.on('console', (m) => {
    if (m.type() === 'error') problems.push(m.text());
  });
  page.on('pageerror', (e) => problems.push(e.message));
  await page.goto(`${adminUrl}/approvals`);
  await page.fill('#token', carol);
  await page.click('#save-token');
  const row = page.locator(`tr[data-id="${pending.id}"]`);
  await row.waitFor({ timeout: 15_000 });
  // request fields are shown as text: the justification's markup is not interpreted
  assert.match(await row.innerText(), /month-end <b>payout<\/b>/);
  assert.equal(await row.locator('b').count(), 0);
  assert.match(await row.innerText(), new RegExp(`alice.*produce topic ${TOPIC.replace(/\./g, '\\.')}`, 's'));
  await row.locator('input.reason').fill('approved from the page');
  await row.locator('button.approve').click();
  await page.locator('#status', { hasText: `Approved ${pending.id}` }).waitFor({ timeout: 15_000 });

  const res = await held;
  const body = (await res.body.json()) as { offset?: number };
  assert.equal(res.statusCode, 200, JSON.stringify(body));
  const onBroker = await readTopic(infra.kafka, TOPIC, 1);
  assert.deepEqual(onBroker.map((r) => JSON.parse(r.value!)), [{ payout: 99 }]);
  // the token stays in the tab: sessionStorage, not a cookie
  assert.equal(await page.evaluate(() => sessionStorage.getItem('streamgate.approver.token') !== null), true);
  assert.deepEqual(await page.context().cookies(), []);
  assert.deepEqual(problems, [], 'no script errors and no CSP violations');
  await page.close();

  const decision = readAudit(spoolDir).find((r) => r.event === 'approval-decision' && r.approval_id === pending.id);
  assert.equal(decision?.subject, 'carol');
  assert.equal(decision?.message, 'approved from the page');
});
