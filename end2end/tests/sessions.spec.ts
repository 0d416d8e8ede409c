import { test, expect, Page, Browser } from '@playwright/test';
import { execFileSync, spawn } from 'child_process';
import * as path from 'path';
import { Member, OWNER, signIn, signedInContexts, watchConsole } from './helpers';

const open = signedInContexts();

/** A signed-in, hydrated page at `url` in a fresh context. */
async function signedIn(browser: Browser, key: Member, url = '/sessions'): Promise<Page> {
  const page = await open(browser, key, url);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  return page;
}

/** Commands of the rows in a section ('active-sessions' or 'ended-sessions'), top to bottom. */
async function commands(page: Page, section: string): Promise<string[]> {
  return page.getByTestId(section).locator('tbody td.command').allTextContents();
}

/** Machines of the rows in a section. */
async function machines(page: Page, section: string): Promise<string[]> {
  return page.getByTestId(section).locator('tbody td.machine').allTextContents();
}

const DEMO = ['palette', 'make release', './migrate.sh up', 'ls -la --color=always /'];

test('each filter narrows the list, combinations narrow further, and the URL holds them', async ({ browser }) => {
  const page = await signedIn(browser, 'owner');
  const problems = watchConsole(page);
  const ended = page.getByTestId('ended-sessions');
  await expect.poll(() => commands(page, 'ended-sessions')).toEqual(expect.arrayContaining(DEMO));

  // Machine: only db-1's sessions, with the count beside the choice.
  await page.getByLabel('Machine').selectOption('db-1');
  await expect(page).toHaveURL(/[?&]machine=db-1/);
  await expect.poll(() => machines(page, 'ended-sessions')).toEqual(['db-1', 'db-1']);
  await expect(ended.locator('h2 .count')).toHaveText('2');
  await expect(page.getByLabel('Machine').locator('option:checked')).toHaveText('db-1 (2)');

  // User on top: db-1 and CI bot have nothing in common.
  await page.getByLabel('User').selectOption({ label: 'CI bot (0)' });
  await expect(page).toHaveURL(/user=ci-bot%40cmdop\.local/);
  await expect(ended.locator('tbody tr')).toHaveCount(0);
  await expect(ended).toContainText('No ended session matches these filters.');

  // The machine to web-1: CI bot's one session there.
  await page.getByLabel('Machine').selectOption('web-1');
  await expect.poll(() => commands(page, 'ended-sessions')).toEqual(['make release']);

  // State: active only hides the ended section.
  await page.getByLabel('State').selectOption('active');
  await expect(page.getByTestId('ended-sessions')).toHaveCount(0);
  await expect(page.getByTestId('active-sessions')).toBeVisible();
  await page.getByLabel('State').selectOption('');

  // Time range: everything of the demo started within the hour; a custom window in the past has nothing.
  await page.getByRole('link', { name: 'Clear filters' }).click();
  // The form keeps the old values until that navigation lands; picking a range before then would keep them too.
  await expect(page).toHaveURL(/\/sessions\?fleet=demo$/);
  await expect(page.getByLabel('Machine')).toHaveValue('');
  await expect(page.getByLabel('User')).toHaveValue('');
  await page.getByLabel('Started').selectOption('1h');
  await expect(page).toHaveURL(/range=1h/);
  await expect.poll(() => commands(page, 'ended-sessions')).toEqual(expect.arrayContaining(DEMO));
  await page.getByLabel('From (UTC)').fill('2020-01-01T00:00');
  await expect(page).toHaveURL(/since=2020-01-01T00%3A00%3A00Z/);
  await expect(page.getByLabel('Started')).toHaveValue('custom');
  await page.getByLabel('To (UTC)').fill('2020-02-01T00:00');
  await expect(page).toHaveURL(/until=2020-02-01/);
  await expect(ended.locator('tbody tr')).toHaveCount(0);
  await expect(page.getByTestId('match-count')).toHaveText('0 matching sessions');

  // The URL alone reproduces a view (reload, or a link someone sent).
  await page.goto('/sessions?machine=web-1&user=demo%40cmdop.local');
  await expect.poll(() => commands(page, 'ended-sessions')).toEqual(['ls -la --color=always /']);
  expect(problems).toEqual([]);
});

test('a bad filter in the URL is explained, naming the parameter', async ({ browser }) => {
  const page = await signedIn(browser, 'owner', '/sessions?range=2h');
  await expect(page.getByRole('alert')).toContainText('range');
  await expect(page.getByRole('alert')).toContainText('"2h" is not one of 1h, 1d, 1w, custom');
});

test('a member sees only the sessions of granted machines, and the filters cannot widen that', async ({ browser }) => {
  const page = await signedIn(browser, 'viewer');
  await expect.poll(() => machines(page, 'ended-sessions')).toEqual(['web-1', 'web-1']);
  await page.goto('/sessions?machine=db-1');
  await expect(page.getByTestId('ended-sessions').locator('tbody tr')).toHaveCount(0);
});

/** `cmdop-inspector admin ARGS` on the e2e server's data; its output. */
function admin(...args: string[]): string {
  const bin = process.env.CMDOP_INSPECTOR_BIN!;
  return execFileSync(bin, ['admin', '--data-dir', process.env.CMDOP_E2E_DATA_DIR!, ...args], { encoding: 'utf8' });
}

function apiToken(email = OWNER.email): string {
  const out = admin('token', 'create', email);
  const token = out.split('\n').find((l) => l.startsWith('cmdop_'));
  if (!token) throw new Error(`no token in: ${out}`);
  return token.trim();
}

/** Records `command` with the real recorder on `machine`, as `email`; resolves with its exit code. */
function record(email: string, machine: string, command: string): Promise<number | null> {
  const recorder = spawn(
    path.join(path.dirname(process.env.CMDOP_INSPECTOR_BIN!), 'cmdop'),
    ['record', '--headless', '--machine', machine, '--', 'sh', '-c', command],
    {
      env: { ...process.env, CMDOP_SERVER: `http://127.0.0.1:${process.env.CMDOP_E2E_PORT}`, CMDOP_TOKEN: apiToken(email) },
      stdio: 'ignore',
    },
  );
  return new Promise((resolve) => recorder.on('exit', resolve));
}

test('a member of two fleets switches between them, and each shows only its own sessions', async ({ browser }) => {
  test.setTimeout(60_000);
  // A second fleet with one machine, and a member of both (the demo members stay in one fleet each).
  const tag = `${Date.now()}`;
  const fleet = `ops-${tag}`;
  const machine = `build-${tag}`;
  const lead = { email: `lead-${tag}@cmdop.local`, password: 'lead-password-1' };
  admin('fleet', 'create', fleet);
  admin('machine', 'add', fleet, machine);
  admin('member', 'add', lead.email, '--password', lead.password, '--name', 'Lee Lead');
  admin('member', 'join', lead.email, 'demo', '--role', 'owner');
  admin('member', 'join', lead.email, fleet, '--role', 'owner');
  const marker = `fleet-e2e-${tag}`;
  expect(await record(lead.email, machine, `echo ${marker}`)).toBe(0);

  const context = await browser.newContext();
  const page = await context.newPage();
  const problems = watchConsole(page);
  await signIn(page, lead);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  const fleetSelect = page.getByLabel('Fleet');
  await expect(fleetSelect.locator('option')).toHaveText(['demo', fleet]);
  // The first fleet is the active one: the demo's sessions, none of the other fleet's.
  await expect(fleetSelect).toHaveValue('demo');
  await expect.poll(() => commands(page, 'ended-sessions')).toEqual(expect.arrayContaining(DEMO));
  expect(await commands(page, 'ended-sessions')).not.toContain(`sh -c 'echo ${marker}'`);

  // The other fleet: only its session, only its machine to choose, and the URL says which fleet.
  await fleetSelect.selectOption(fleet);
  await expect(page).toHaveURL(new RegExp(`[?&]fleet=${fleet}`));
  await expect.poll(() => commands(page, 'ended-sessions')).toEqual([`sh -c 'echo ${marker}'`]);
  await expect(page.getByLabel('Machine').locator('option')).toHaveText(['All machines (1)', `${machine} (1)`]);

  // And back.
  await page.getByLabel('Fleet').selectOption('demo');
  await expect.poll(() => commands(page, 'ended-sessions')).toEqual(expect.arrayContaining(DEMO));
  expect(problems).toEqual([]);

  // The demo owner is in one fleet: no switcher, and the other fleet's session is not reachable by URL.
  const id = await (async () => {
    await page.goto(`/sessions?fleet=${fleet}`);
    return page.getByTestId('ended-sessions').locator('tbody tr').first().getAttribute('data-session-id');
  })();
  const owner = await signedIn(browser, 'owner');
  await expect(owner.getByLabel('Fleet')).toHaveCount(0);
  const response = await owner.goto(`/sessions/${id}`);
  expect(response?.status()).toBe(404);
  await expect(owner.getByRole('heading', { name: 'Not found' })).toBeVisible();
  await context.close();
});

test('a live session appears in the list, streams on its page, and moves to ended with its exit code', async ({ browser }) => {
  test.setTimeout(60_000);
  const list = await signedIn(browser, 'owner');
  const problems = watchConsole(list);
  const marker = `live-e2e-${Date.now()}`;
  const exited = record(OWNER.email, 'web-1', `echo ${marker}; sleep 4; echo finished; exit 4`);

  // Without a reload, the new session shows up among the active ones, its duration ticking.
  const row = list.getByTestId('active-sessions').locator('tbody tr', { hasText: marker });
  await expect(row).toHaveCount(1, { timeout: 15_000 });
  await expect(row.locator('[data-kind="cli"]')).toHaveCount(1);
  const first = await row.getByTestId('duration').textContent();
  await expect(row.getByTestId('duration')).not.toHaveText(first!, { timeout: 5_000 });

  // Its page streams the output while it runs.
  const id = await row.getAttribute('data-session-id');
  const page = await signedIn(browser, 'owner', `/sessions/${id}`);
  await expect(page.locator('.term')).toContainText(marker);
  await expect(page.getByTestId('state')).toHaveText('active');

  // It ends: the page shows the exit code and a duration; the list moves the row to the ended section.
  await expect(page.locator('.term')).toContainText('finished', { timeout: 15_000 });
  await expect(page.getByTestId('state')).toHaveText('ended', { timeout: 15_000 });
  await expect(page.getByTestId('exit-code')).toHaveText('4');
  await expect(page.getByTestId('duration')).toHaveText(/^\d+\.\ds$/);
  const ended = list.getByTestId('ended-sessions').locator('tbody tr', { hasText: marker });
  await expect(ended).toHaveCount(1, { timeout: 15_000 });
  await expect(ended.locator('.exit-fail')).toHaveText('4');
  await expect(list.getByTestId('active-sessions').locator('tbody tr', { hasText: marker })).toHaveCount(0);
  expect(await exited).toBe(4);
  expect(problems).toEqual([]);
});
