import { test, expect } from '@playwright/test';
import * as path from 'path';
import { OWNER, VIEWER, watchConsole, signIn } from './helpers';

test('signed out, /sessions sends you to sign in', async ({ page }) => {
  await page.goto('/sessions');
  await expect(page).toHaveURL(/\/login\?next=%2Fsessions$/);
  await expect(page.getByRole('button', { name: 'Sign in' })).toBeVisible();
});

test('the owner signs in, sees every demo session, and the page hydrates cleanly', async ({ page }) => {
  const problems = watchConsole(page);
  await signIn(page, OWNER);
  const rows = page.locator('table.sessions tbody tr');
  await expect(rows).toHaveCount(4);
  await expect(page.locator('table.sessions')).toContainText('make release');
  await expect(page.locator('table.sessions')).toContainText('./migrate.sh up');
  // The failing migration shows its non-zero exit code, marked as a failure.
  const failed = rows.filter({ hasText: './migrate.sh up' });
  await expect(failed.locator('.exit-fail')).toHaveText('3');
  // Newest first: the demo records the palette last.
  await expect(rows.first()).toContainText('palette');
  // Hydration happened: the WASM took over and set the marker...
  await expect(page.locator('body')).toHaveAttribute('data-hydrated', 'true');
  // ...and did so without hydration warnings or any other console error.
  await page.waitForTimeout(300);
  expect(problems).toEqual([]);
  await expect(page.locator('.who-name')).toHaveText('Dana Demo');
  if (process.env.UPDATE_DOCS_SCREENSHOTS) {
    await page.setViewportSize({ width: 1200, height: 420 });
    await page.screenshot({ path: path.resolve(__dirname, '../../docs/sessions.png') });
    await page.emulateMedia({ colorScheme: 'dark' });
    await page.screenshot({ path: path.resolve(__dirname, '../../docs/sessions-dark.png') });
    await page.emulateMedia({ colorScheme: 'light' });
    await page.setViewportSize({ width: 390, height: 640 });
    await page.screenshot({ path: path.resolve(__dirname, '../../docs/sessions-phone.png') });
  }
});

test('a member sees only the machines they were granted', async ({ page }) => {
  await signIn(page, VIEWER);
  const rows = page.locator('table.sessions tbody tr');
  await expect(rows).toHaveCount(2);
  for (const machine of await rows.locator('td.machine').allTextContents()) {
    expect(machine).toBe('web-1');
  }
  await expect(page.locator('table.sessions')).not.toContainText('db-1');
});

test('a wrong password is refused with a clear message and no cookie', async ({ page, context }) => {
  await page.goto('/login');
  await page.getByLabel('Email').fill(OWNER.email);
  await page.getByLabel('Password').fill('not-the-password');
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(/\/login\?error=invalid/);
  await expect(page.getByRole('alert')).toContainText('do not match');
  // The email is kept so the person only retypes the password.
  await expect(page.getByLabel('Email')).toHaveValue(OWNER.email);
  expect((await context.cookies()).find((c) => c.name === 'cmdop_session')).toBeUndefined();
});

test('the login cookie is HttpOnly and SameSite=Lax, and signing out ends it', async ({ page, context }) => {
  await signIn(page, OWNER);
  const cookie = (await context.cookies()).find((c) => c.name === 'cmdop_session');
  expect(cookie?.httpOnly).toBe(true);
  expect(cookie?.sameSite).toBe('Lax');
  await page.getByRole('button', { name: 'Sign out' }).click();
  await expect(page).toHaveURL(/\/login$/);
  await page.goto('/sessions');
  await expect(page).toHaveURL(/\/login\?next=/);
});

test('unknown pages answer 404 with a page that says so', async ({ page }) => {
  await signIn(page, OWNER);
  const res = await page.goto('/no-such-page');
  expect(res?.status()).toBe(404);
  await expect(page.getByRole('heading', { name: 'Not found' })).toBeVisible();
});

test.describe('without JavaScript', () => {
  test.use({ javaScriptEnabled: false });

  test('signing in and reading the sessions list work as plain HTML', async ({ page }) => {
    await signIn(page, OWNER);
    await expect(page.locator('table.sessions tbody tr')).toHaveCount(4);
    await expect(page.locator('body')).not.toHaveAttribute('data-hydrated', 'true');
  });
});
