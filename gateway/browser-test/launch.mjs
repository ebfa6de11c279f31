// What the drivers share: Debian's Chromium, headless, and the test's lines on stdin.
import { chromium } from 'playwright-core';
import readline from 'node:readline';

/** Chromium at $CHROMIUM (default /usr/bin/chromium), headless, quiet. */
export function launchChromium() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
    headless: true,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking',
      '--disable-component-update', '--disable-sync'],
  });
}

const lines = readline.createInterface({ input: process.stdin });

/** The next line the test writes. */
export const nextLine = () => new Promise((resolve) => lines.once('line', resolve));

/** Runs `main`, exits 0, or prints `FAIL <reason>` and exits 1. */
export function run(main) {
  main().then(() => process.exit(0), (err) => {
    console.log('FAIL ' + String(err && err.stack || err).replace(/\n/g, ' | '));
    process.exit(1);
  });
}
