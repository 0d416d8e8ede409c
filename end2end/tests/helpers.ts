import { expect, Page, ConsoleMessage } from '@playwright/test';

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
