import fs from 'node:fs';
import path from 'node:path';
import { expect } from 'chai';
import { chromium, type Browser, type Locator, type Page } from 'playwright-core';
import { makeUserDir, removeUserDir, startRed, type RedProcess } from '../helpers/red-process';

/**
 * The editor in a real browser: Debian's Chromium driven by playwright-core against a real `node-red` process with
 * the packed package installed. Every node of the package is found in the palette, dragged onto the workspace, its
 * dialog filled, a bad value seen to stop the deploy, deployed, its help opened; every example is imported and
 * deployed. `UPDATE_SCREENSHOTS=1` also writes the README's screenshots to docs/.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
type Any = any;

const ROOT = path.resolve(__dirname, '..', '..');
const PKG = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { name: string };
const CHROMIUM = process.env.CHROMIUM_PATH || '/usr/bin/chromium';
const SCREENSHOTS = process.env.UPDATE_SCREENSHOTS === '1' ? path.join(ROOT, 'docs') : undefined;
const LAUNCH_ARGS = ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync', '--no-first-run', '--disable-quic'];

/** Node types and palette categories, read from the editor files that exist in the repository right now. */
function editorTypes(): { type: string; category: string }[] {
  const out: { type: string; category: string }[] = [];
  for (const f of fs.readdirSync(path.join(ROOT, 'nodes')).filter((n) => n.endsWith('.html')).sort()) {
    const html = fs.readFileSync(path.join(ROOT, 'nodes', f), 'utf8');
    for (const m of html.matchAll(/registerType\(\s*['"]([\w-]+)['"]\s*,\s*\{[\s\S]*?category\s*:\s*['"]([^'"]+)['"]/g)) out.push({ type: m[1], category: m[2] });
  }
  return out;
}
const TYPES = editorTypes();
const FLOW_TYPES = TYPES.filter((t) => t.category !== 'config').map((t) => t.type);
const CONFIG_TYPES = TYPES.filter((t) => t.category === 'config').map((t) => t.type);
const EXAMPLES = fs.readdirSync(path.join(ROOT, 'examples')).filter((f) => f.endsWith('.json')).sort();

describe('editor in a real browser (Chromium + playwright-core)', function () {
  this.timeout(90000);
  // A browser on a busy 2-core machine is sometimes slow to settle (a tooltip removed twice by the editor's own
  // code, a click that lands during a redraw): one more try per test. A dialog that is really broken fails both.
  this.retries(1);
  let red: RedProcess;
  let userDir: string;
  let browser: Browser;
  let page: Page;
  const pageErrors: string[] = [];
  const placed: Record<string, string> = {}; // type -> node id on the workspace
  let configId = '';

  before(async function () {
    this.timeout(120000);
    if (!fs.existsSync(CHROMIUM)) {
      // eslint-disable-next-line @typescript-eslint/no-require-imports
      require('../../scripts/ensure-chromium.js').ensureChromium();
    }
    userDir = makeUserDir('browser');
    red = await startRed(userDir, [{ id: 'tab1', type: 'tab', label: 'Flow 1' }], {}, { MIXPANEL_TOKEN: 'browser-test-token' });
    browser = await chromium.launch({ executablePath: CHROMIUM, headless: true, args: LAUNCH_ARGS });
    page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on('pageerror', (e) => pageErrors.push(`${e.message}\n${(e.stack ?? '').split('\n').slice(1, 4).join('\n')}`));
    await openEditor();
  });

  after(async () => {
    await browser?.close();
    await red?.stop();
    if (userDir) removeUserDir(userDir);
  });

  afterEach(function () {
    // An exception thrown by an editor script fails the test that caused it.
    const errs = pageErrors.splice(0);
    if (this.currentTest?.state === 'passed' && errs.length) throw new Error(`errors in the page: ${errs.join('\n')}`);
  });

  async function openEditor() {
    await page.goto(red.url);
    await page.waitForFunction((types) => {
      const RED = (globalThis as Any).RED;
      return RED?.nodes && types.every((t: string) => RED.nodes.getType(t)) && document.querySelector('.red-ui-palette-node');
    }, TYPES.map((t) => t.type), { timeout: 60000 });
    await page.waitForFunction(() => (globalThis as Any).RED.nodes.workspace('tab1') || (globalThis as Any).RED.workspaces.count() > 0);
  }

  const dialogInput = (prop: string, config = false) => page.locator(`#node-${config ? 'config-' : ''}input-${prop}`);
  const typedInputField = (prop: string, config = false) => page.locator(`#node-${config ? 'config-' : ''}input-${prop} + .red-ui-typedInput-container input.red-ui-typedInput-input`);
  const hasError = (l: Locator) => l.evaluate((e) => e.classList.contains('input-error') || !!(e.nextElementSibling?.classList.contains('red-ui-typedInput-container') && e.nextElementSibling.classList.contains('input-error')));
  const nodeValid = (id: string) => page.evaluate((i) => (globalThis as Any).RED.nodes.node(i)?.valid, id);

  async function dropFromPalette(type: string, x: number, y: number): Promise<string> {
    const before: string[] = await page.evaluate((t) => (globalThis as Any).RED.nodes.filterNodes({ type: t }).map((n: Any) => n.id), type);
    await page.locator(`.red-ui-palette-node[data-palette-type="${type}"]`).dragTo(page.locator('#red-ui-workspace-chart'), { targetPosition: { x, y } });
    const after: string[] = await page.evaluate((t) => (globalThis as Any).RED.nodes.filterNodes({ type: t }).map((n: Any) => n.id), type);
    const added = after.filter((id) => !before.includes(id));
    expect(added, `dragging ${type} onto the workspace adds one node`).to.have.length(1);
    return added[0];
  }

  async function openDialog(id: string) {
    await page.locator(`#red-ui-workspace-chart [id="${id}"]`).dblclick();
    await page.locator('#node-dialog-ok').waitFor({ state: 'visible' });
  }

  async function deploy(): Promise<'deployed' | 'invalid'> {
    await page.locator('#red-ui-header-button-deploy').click();
    const ok = page.locator('.red-ui-notification', { hasText: 'Successfully deployed' });
    const invalid = page.locator('.red-ui-deploy-dialog-confirm-list');
    await Promise.race([ok.first().waitFor({ state: 'visible' }), invalid.first().waitFor({ state: 'visible' })]);
    if (await invalid.first().isVisible()) return 'invalid';
    await page.evaluate(() => (globalThis as Any).$('.red-ui-notification').remove());
    return 'deployed';
  }

  /** Visible text of the open dialog must be translated: no raw `type.label.x` catalogue keys. */
  async function expectTranslated(scope: Locator, type: string) {
    const text = await scope.innerText();
    expect(text, `untranslated keys in the ${type} dialog`).to.not.match(new RegExp(`${type}\\.[a-z-]+\\.`));
  }

  it('lists every node in the Mixpanel palette category with a translated label and an icon', async () => {
    expect(FLOW_TYPES, 'node types found in nodes/*.html').to.include('mixpanel-audience-out');
    for (const type of FLOW_TYPES) {
      const node = page.locator(`.red-ui-palette-node[data-palette-type="${type}"]`);
      await node.waitFor({ state: 'visible' });
      const info = await node.evaluate((e) => ({
        category: e.closest('.red-ui-palette-category')?.querySelector('.red-ui-palette-header')?.textContent?.trim(),
        label: e.querySelector('.red-ui-palette-label')?.textContent?.trim(),
        icon: (e.querySelector('.red-ui-palette-icon') as HTMLElement | null)?.style.backgroundImage ?? '',
      }));
      expect(info.category, `${type} category`).to.equal('Mixpanel');
      expect(info.label, `${type} palette label`).to.be.a('string').and.not.match(/\./);
      expect(info.icon, `${type} icon`).to.match(/\.svg/);
      const iconOk = await page.evaluate(async (url) => (await fetch(url.replace(/^url\("?|"?\)$/g, ''))).ok, info.icon);
      expect(iconOk, `${type} icon loads`).to.equal(true);
    }
    if (SCREENSHOTS) {
      const category = page.locator('.red-ui-palette-category').filter({ has: page.locator('.red-ui-palette-header', { hasText: /^\s*Mixpanel\s*$/ }) });
      await category.scrollIntoViewIfNeeded();
      await category.screenshot({ path: path.join(SCREENSHOTS, 'palette.png') });
    }
  });

  it('mixpanel-config: token required unless dry run or ${ENV}, API host only for a custom region', async () => {
    placed['mixpanel-audience-out'] = await dropFromPalette('mixpanel-audience-out', 320, 120);
    await openDialog(placed['mixpanel-audience-out']);
    await page.locator('#node-input-btn-mixpanel-add').click();
    const token = dialogInput('token', true);
    await token.waitFor({ state: 'visible' });
    await expectTranslated(page.locator('.red-ui-tray').last(), 'mixpanel-config');
    expect(await dialogInput('region', true).inputValue()).to.equal('us');
    expect(await page.locator('.mixpanel-config-custom-row').isVisible(), 'API host hidden for US').to.equal(false);
    expect(await page.locator('#mixpanel-config-token-tip').innerText()).to.contain('${MIXPANEL_TOKEN}');

    await token.fill('');
    await token.dispatchEvent('change');
    expect(await hasError(token), 'an empty token is an error').to.equal(true);
    await token.fill('${MIXPANEL_TOKEN}');
    await token.dispatchEvent('change');
    expect(await hasError(token), '${MIXPANEL_TOKEN} is accepted').to.equal(false);
    await token.fill('');
    await dialogInput('dryRun', true).check();
    await token.dispatchEvent('change');
    expect(await hasError(token), 'no token needed for a dry run').to.equal(false);

    await dialogInput('region', true).selectOption('custom');
    expect(await page.locator('.mixpanel-config-custom-row').isVisible(), 'API host shown for custom').to.equal(true);
    const host = typedInputField('apiHost', true);
    await host.fill('not a url');
    await host.dispatchEvent('change');
    expect(await hasError(dialogInput('apiHost', true)), 'a bad API host is an error').to.equal(true);
    await host.fill('http://127.0.0.1:9');
    await host.dispatchEvent('change');
    expect(await hasError(dialogInput('apiHost', true))).to.equal(false);
    await page.locator('#node-config-dialog-ok').click();
    await token.waitFor({ state: 'detached' });

    configId = await dialogInput('mixpanel').inputValue();
    const cfg = await page.evaluate((id) => { const n = (globalThis as Any).RED.nodes.node(id); return { type: n.type, region: n.region, apiHost: n.apiHost, dryRun: n.dryRun, valid: n.valid }; }, configId);
    expect(cfg).to.deep.equal({ type: 'mixpanel-config', region: 'custom', apiHost: 'http://127.0.0.1:9', dryRun: true, valid: true });
  });

  it('mixpanel-audience-out: grouped dialog, a bad batch size stops the deploy, a good one deploys', async () => {
    const id = placed['mixpanel-audience-out'];
    const tray = page.locator('.red-ui-tray').last();
    await expectTranslated(tray, 'mixpanel-audience-out');
    for (const section of ['Mixpanel', 'Profiles', 'Output', 'Delivery']) expect(await tray.locator('h4', { hasText: section }).count(), `section ${section}`).to.equal(1);
    expect(await dialogInput('batchSize').inputValue()).to.equal('2000');
    expect(await page.locator('#node-input-identityTargets-list input:checked').count()).to.equal(4);
    if (SCREENSHOTS) await page.screenshot({ path: path.join(SCREENSHOTS, 'dialog-audience-out.png') });

    await dialogInput('batchSize').fill('5000');
    await dialogInput('batchSize').dispatchEvent('change');
    expect(await hasError(dialogInput('batchSize')), 'batch size 5000 is an error').to.equal(true);
    await page.locator('#node-dialog-ok').click();
    expect(await nodeValid(id), 'node invalid after a bad batch size').to.equal(false);
    expect(await deploy(), 'the deploy stops on the invalid node').to.equal('invalid');
    expect(await page.locator('.red-ui-deploy-dialog-confirm-list').innerText()).to.contain('mixpanel-audience-out');
    await page.locator('.red-ui-notification button', { hasText: 'Cancel' }).click();

    await openDialog(id);
    await dialogInput('batchSize').fill('500');
    await dialogInput('targetMode').selectOption('first');
    await page.locator('#node-dialog-ok').click();
    expect(await nodeValid(id)).to.equal(true);
    expect(await deploy()).to.equal('deployed');

    const flows = await (await fetch(`${red.url}/flows`)).json() as Any[];
    const saved = flows.find((n) => n.id === id);
    expect(saved).to.include({ mixpanel: configId, batchSize: '500', targetMode: 'first' });
    // The runtime's status is translated and short.
    const status = page.locator(`#red-ui-workspace-chart [id="${id}"] .red-ui-flow-node-status-label`);
    await page.waitForFunction((i) => document.querySelector(`[id="${i}"] .red-ui-flow-node-status-label`)?.textContent, id);
    const text = (await status.textContent()) ?? '';
    expect(text).to.match(/^dry run: \d+ checked$/);
  });

  it('opens the help sidebar in house style for every node', async () => {
    for (const type of [...FLOW_TYPES, ...CONFIG_TYPES]) {
      await page.evaluate((t) => { (globalThis as Any).RED.actions.invoke('core:show-help-tab'); (globalThis as Any).RED.sidebar.help.show(t); }, type);
      // The help sidebar renders one node's help: its title, then the text with the h3 sections.
      await page.locator('.red-ui-help-title').first().waitFor({ state: 'visible' });
      const read = () => page.evaluate(() => ({
        headings: [...document.querySelectorAll('.red-ui-help .red-ui-help h3')].map((h) => (h.textContent ?? '').trim()),
        first: (document.querySelector('.red-ui-help .red-ui-help p')?.textContent ?? '').trim(),
      }));
      let got = await read();
      for (let i = 0; i < 10 && got.headings.length === 0; i++) { await page.waitForTimeout(100); got = await read(); }
      const headings = got.headings;
      const first = got.first;
      const want = CONFIG_TYPES.includes(type) ? ['Details', 'References'] : ['Inputs', 'Outputs', 'Details', 'References'];
      expect(headings, `${type} help sections`).to.include.members(want);
      expect(first.length, `${type} help summary`).to.be.greaterThan(20);
    }
  });

  for (const type of FLOW_TYPES.filter((t) => t !== 'mixpanel-audience-out')) {
    it(`${type}: drag, dialog, validation, deploy`, async () => {
      const id = await dropFromPalette(type, 320, 200 + 60 * FLOW_TYPES.indexOf(type));
      placed[type] = id;
      await openDialog(id);
      await expectTranslated(page.locator('.red-ui-tray').last(), type);
      if (await dialogInput('mixpanel').count()) await dialogInput('mixpanel').selectOption(configId);
      if (await dialogInput('path').count()) {
        const p = dialogInput('path');
        await p.fill('no-leading-slash');
        await p.dispatchEvent('change');
        expect(await hasError(p), `${type}: a path without a leading / is an error`).to.equal(true);
        await p.fill(`/mixpanel/${type}`);
        await p.dispatchEvent('change');
        expect(await hasError(p)).to.equal(false);
      }
      const invalidFields = await page.evaluate(() => (globalThis as Any).$(".red-ui-tray:last .input-error").map((_: number, e: Element) => e.id).get());
      expect(invalidFields, `${type}: a fresh node with a config is valid`).to.deep.equal([]);
      await page.locator('#node-dialog-ok').click();
      expect(await nodeValid(id), `${type} valid`).to.equal(true);
      expect(await deploy()).to.equal('deployed');
    });
  }

  for (const file of EXAMPLES) {
    it(`imports and deploys the example ${file}`, async () => {
      const res = await fetch(`${red.url}/flows`, { method: 'POST', headers: { 'Content-Type': 'application/json', 'Node-RED-Deployment-Type': 'full' }, body: JSON.stringify([{ id: 'tab1', type: 'tab', label: 'Flow 1' }]) });
      expect(res.status).to.equal(204);
      await openEditor();
      await page.evaluate(() => (globalThis as Any).RED.actions.invoke('core:show-examples-import-dialog'));
      await page.locator('#red-ui-clipboard-dialog-ok').waitFor({ state: 'visible' });
      const tree = page.locator('.ui-dialog:visible .red-ui-treeList-label');
      await tree.filter({ hasText: PKG.name }).first().click();
      const name = file.replace(/\.json$/, '');
      await tree.filter({ hasText: new RegExp(`^\\s*${name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}\\s*$`) }).first().click();
      await page.locator('#red-ui-clipboard-dialog-ok').click();
      await page.locator('#red-ui-workspace-chart').click({ position: { x: 120, y: 60 } }); // drop the imported nodes
      const example = JSON.parse(fs.readFileSync(path.join(ROOT, 'examples', file), 'utf8')) as Any[];
      expect(example.some((n) => n.type === 'comment'), `${file} has a comment node`).to.equal(true);
      const state = await page.evaluate(() => {
        const RED = (globalThis as Any).RED;
        const nodes: Any[] = [];
        RED.nodes.eachNode((n: Any) => { nodes.push({ type: n.type, valid: n.valid, label: n.type }); });
        RED.nodes.eachConfig((n: Any) => { nodes.push({ type: n.type, valid: n.valid }); });
        return nodes;
      });
      expect(state.filter((n) => n.type === 'unknown'), `${file}: unknown node types`).to.deep.equal([]);
      for (const t of new Set(example.map((n) => n.type))) expect(state.map((n) => n.type), `${file} imported ${t}`).to.include(t);
      if (SCREENSHOTS && file === 'mixpanel-round-trip.json') {
        await page.locator('#red-ui-workspace-chart').click({ position: { x: 700, y: 650 } }); // deselect
        await page.evaluate(() => (globalThis as Any).$('.red-ui-notification').remove());
        await page.locator('#red-ui-workspace').screenshot({ path: path.join(SCREENSHOTS, 'example-round-trip.png') });
      }
      const logFrom = red.log.length;
      expect(await deploy(), `${file} deploys without invalid nodes`).to.equal('deployed');
      await page.waitForTimeout(300);
      const log = red.log.slice(logFrom).join('');
      expect(log.split("\n").filter((l) => /\[error\]/.test(l)), `${file}: runtime errors after deploy`).to.deep.equal([]);
    });
  }
});
