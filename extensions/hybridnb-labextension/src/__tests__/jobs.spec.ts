import { ApiError } from '../api';
import { JobBody } from '../jobs';
import { FakeAPI } from './fake';

const sites = {
  sites: [
    { name: 'lab', tier: 'private', backend: 'local', capacity: { cpu: 2, memory: 1 }, classifications: ['pii'], cost: {} },
    { name: 'cloud', tier: 'public', backend: 'local', capacity: { cpu: 8, memory: 1 }, classifications: [], cost: {} }
  ]
};

describe('the run-as-job form', () => {
  it('reads the parameters cell and shows the planner’s choice and why', async () => {
    const api = new FakeAPI({
      'GET notebook-parameters?path=work%2Fpii.ipynb': {
        parameters: [
          { name: 'rows', default: '10', type: 'int', help: 'how many' },
          { name: 'label', default: "'x'", type: 'str', help: '' }
        ],
        data: ['patients']
      },
      'GET sites': sites,
      'POST plan': {
        chosen: 'lab',
        policy: 'private-first',
        ranked: [],
        rejected: [{ site: 'cloud', tier: 'public', reasons: ['residency: patients is pii'], kinds: ['residency'] }],
        explanation: 'lab: the only site pii may go to'
      }
    });
    const body = new JobBody(api, 'work/pii.ipynb');
    await body.load();
    expect(api.calls.find(c => c.route === 'POST plan')?.body).toEqual({
      kind: 'notebook',
      data: ['patients']
    });
    expect(body.node.textContent).toContain('The planner chooses lab (private-first).');
    expect(body.node.textContent).toContain('the only site pii may go to');
    const rows = body.node.querySelector<HTMLInputElement>('input[name="parameters.rows"]')!;
    expect(rows.value).toBe('10');
    expect(body.parameters()).toEqual({});
    rows.value = '25';
    expect(body.parameters()).toEqual({ rows: 25 });
    // Choosing a site the planner rejected says why, before anything is sent.
    body.site.value = 'cloud';
    body.site.dispatchEvent(new Event('change'));
    expect(body.node.textContent).toContain('cloud cannot take it: residency: patients is pii');
    // A server error about one parameter lands under it.
    body.errors.show(new ApiError('rows: not an int', 400, 'parameters.rows'));
    expect(
      body.node.querySelector('[data-field="parameters.rows"] .hybridnb-field-error')?.textContent
    ).toBe('rows: not an int');
  });

  it('says when the notebook cannot be read', async () => {
    const api = new FakeAPI({
      'GET notebook-parameters?path=gone.ipynb': new ApiError("no notebook 'gone.ipynb'", 404, 'path'),
      'GET sites': sites
    });
    const body = new JobBody(api, 'gone.ipynb');
    await body.load();
    const shown = body.node.querySelector('.hybridnb-field-error');
    expect(shown?.textContent).toBe("no notebook 'gone.ipynb'");
    expect(body.node.contains(shown!)).toBe(true);
  });
});
