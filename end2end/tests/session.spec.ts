import { test, expect, Page, Browser, BrowserContextOptions } from '@playwright/test';
import * as path from 'path';
import { Member, signedInContexts, watchConsole } from './helpers';

const open = signedInContexts();

/** A signed-in page on the sessions list in a fresh context (`options` e.g. to turn JavaScript off). */
function signedIn(browser: Browser, key: Member, options: BrowserContextOptions = {}): Promise<Page> {
  return open(browser, key, '/sessions', options);
}

/** Opens a demo session from the list by its command; returns its URL. */
async function openSession(page: Page, command: string): Promise<string> {
  await page.locator('table.sessions').getByRole('link', { name: command, exact: true }).click();
  await expect(page).toHaveURL(/\/sessions\/[0-9a-f-]{36}$/);
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  return page.url();
}

test('a session page renders SGR colors as a terminal would, with its exit code, cleanly hydrated', async ({ browser }) => {
  const page = await signedIn(browser, 'owner');
  const problems = watchConsole(page);
  await openSession(page, 'palette');
  await expect(page.getByTestId('exit-code')).toHaveText('0');
  await expect(page.getByTestId('state')).toHaveText('ended');
  // "\e[31m 31 \e[0m" is drawn red: the computed color is the theme's red, not the default foreground.
  const red = page.locator('.term .fg-1', { hasText: '31' }).first();
  await expect(red).toBeVisible();
  expect(await red.evaluate((el) => getComputedStyle(el).color)).toBe('rgb(229, 83, 75)');
  const plain = await page.locator('.term-scroll').evaluate((el) => getComputedStyle(el).color);
  expect(plain).not.toBe('rgb(229, 83, 75)');
  // Bold and 256-color backgrounds too.
  await expect(page.locator('.term .b', { hasText: 'bold' })).toBeVisible();
  expect(await page.locator('.term [style*="background-color"]').count()).toBeGreaterThan(30);
  await page.waitForTimeout(300);
  expect(problems).toEqual([]);
  if (process.env.UPDATE_DOCS_SCREENSHOTS) {
    await page.setViewportSize({ width: 1280, height: 760 });
    await page.screenshot({ path: path.resolve(__dirname, '../../docs/session.png') });
  }
});

test('a failed command shows its exit code in red', async ({ browser }) => {
  const page = await signedIn(browser, 'owner');
  await openSession(page, './migrate.sh up');
  await expect(page.getByTestId('exit-code').locator('.exit-fail')).toHaveText('3');
  await expect(page.locator('.term')).toContainText('relation "users" already exists');
});

test('a gap marker stands where output was lost, with its byte count', async ({ browser }) => {
  const page = await signedIn(browser, 'owner');
  await openSession(page, 'make release');
  const gap = page.locator('.term .gap');
  await expect(gap).toHaveCount(1);
  await expect(gap).toContainText('18,432 bytes');
  await expect(gap).toContainText('lost while the recorder was offline');
  // The `\r` progress bar ends as one line, as a terminal shows it.
  await expect(page.locator('.term .r', { hasText: '100%' })).toHaveCount(1);
});

test('the copy button copies the cmdop connect snippet', async ({ browser }) => {
  const page = await signedIn(browser, 'owner', { permissions: ['clipboard-read', 'clipboard-write'] });
  const url = await openSession(page, 'make release');
  await expect(page.getByTestId('connect-snippet')).toHaveText('cmdop connect web-1');
  await page.getByRole('button', { name: 'Copy the cmdop connect command' }).click();
  await expect(page.getByRole('button', { name: 'Copy the cmdop connect command' })).toHaveText('Copied');
  expect(await page.evaluate(() => navigator.clipboard.readText())).toBe('cmdop connect web-1');
  const id = url.split('/').pop();
  await expect(page.getByRole('link', { name: 'Open in desktop' })).toHaveAttribute('href', `cmdop://session/${id}`);
});

test('find in transcript highlights matches and steps through them', async ({ browser }) => {
  const page = await signedIn(browser, 'owner');
  await openSession(page, 'palette');
  await page.getByLabel('Find in transcript').fill('9');
  await page.getByLabel('Find in transcript').press('Enter');
  await expect(page.locator('.find-count')).toHaveText(/^1 of \d+$/);
  const total = Number((await page.locator('.find-count').textContent())!.split(' of ')[1]);
  expect(total).toBeGreaterThan(1);
  await expect(page.locator('.term mark')).toHaveCount(total);
  await expect(page.locator('.term mark.cur')).toHaveCount(1);
  await page.getByRole('button', { name: 'Next match' }).click();
  await expect(page.locator('.find-count')).toHaveText(`2 of ${total}`);
  await expect(page).toHaveURL(/#offset=\d+$/);
  await page.getByRole('button', { name: 'Previous match' }).click();
  await expect(page.locator('.find-count')).toHaveText(`1 of ${total}`);
});

test('a session on a machine the member was not granted is not reachable by URL', async ({ browser }) => {
  // The owner finds the URL of a db-1 session...
  const page = await signedIn(browser, 'owner');
  const url = await openSession(page, 'palette');
  // ...which a member granted only web-1 cannot open: the same 404 page as for anything unknown.
  const viewer = await signedIn(browser, 'viewer');
  const response = await viewer.goto(url);
  expect(response!.status()).toBe(404);
  await expect(viewer.getByRole('heading', { name: 'Not found' })).toBeVisible();
  await expect(viewer.locator('.term')).toHaveCount(0);
});

test('an ended session is readable with JavaScript disabled', async ({ browser }) => {
  const page = await signedIn(browser, 'owner', { javaScriptEnabled: false });
  await page.locator('table.sessions').getByRole('link', { name: './migrate.sh up', exact: true }).click();
  await expect(page.locator('.term')).toContainText('0003_users.sql');
  await expect(page.getByTestId('exit-code')).toHaveText('3');
});
