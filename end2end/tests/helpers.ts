import { test, expect, Browser, BrowserContextOptions, Page, ConsoleMessage } from '@playwright/test';

export const OWNER = { email: 'demo@cmdop.local', password: 'cmdop-demo' };
export const VIEWER = { email: 'viewer@cmdop.local', password: 'cmdop-viewer' };

/** Collects console errors and warnings (hydration mismatches are reported as such) and page errors. */
export function watchConsole(page: Page): string[] {
  const problems: string[] = [];
  page.on('console', (m: ConsoleMessage) => {
    if (m.type() === 'error' || m.type() === 'warning') problems.push(`${m.type()}: ${m.text()}`);
  });
  page.on('pageerror', (e) => problems.push(`pageerror: ${e.message}`));
  return problems;
}

export async function signIn(page: Page, who: { email: string; password: string }) {
  await page.goto('/login');
  await page.getByLabel('Email').fill(who.email);
  await page.getByLabel('Password').fill(who.password);
  await page.getByRole('button', { name: 'Sign in' }).click();
  await expect(page).toHaveURL(/\/sessions$/);
}

export type Member = 'owner' | 'viewer';

/**
 * Signs each demo member in once for the whole spec file (the server rate-limits logins per email) and returns
 * a function that opens `url` in a fresh context of that member (`options` e.g. to turn JavaScript off).
 */
export function signedInContexts() {
  const states: Partial<Record<Member, BrowserContextOptions['storageState']>> = {};
  test.beforeAll(async ({ browser }) => {
    for (const [key, who] of [['owner', OWNER], ['viewer', VIEWER]] as const) {
      const context = await browser.newContext();
      const page = await context.newPage();
      await signIn(page, who);
      states[key] = await context.storageState();
      await context.close();
    }
  });
  return async (browser: Browser, key: Member, url = '/sessions', options: BrowserContextOptions = {}): Promise<Page> => {
    const context = await browser.newContext({ ...options, storageState: states[key] });
    const page = await context.newPage();
    await page.goto(url);
    return page;
  };
}
