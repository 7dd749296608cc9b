// Knowledge gaps: groups of recent tickets the knowledge base answers
// badly, costliest first, each with its example tickets and a draft
// article built from what solved them; an admin edits a draft and accepts
// it into kb/ (the selector uses it from then on; the ledger keeps every
// version). Text from the API goes in as text.
'use strict';

function gapGroup(g, i) {
  const sec = el('section', null, 'gap');
  sec.setAttribute('aria-labelledby', 'gap-' + i);
  const h = el('h4', `${i + 1}. ${g.category}: ${g.volume} tickets, ${Number(g.cost_hours).toFixed(1)} h of handling`);
  h.id = 'gap-' + i;
  sec.append(h);
  sec.append(el('p', `words: ${(g.words || []).join(', ') || '–'} · nearest article: ${g.nearest_article || 'none'} · mean best match ${Number(g.mean_best_score).toFixed(2)}`, 'muted'));
  const ex = el('p', 'examples: ');
  for (const id of g.examples || []) {
    const a = el('a', id);
    a.href = '#ticket/' + encodeURIComponent(id);
    ex.append(a, document.createTextNode(' '));
  }
  sec.append(ex);
  const label = el('label', 'Draft article (edit before accepting)');
  const area = el('textarea', null, 'draft-text');
  area.id = 'gap-draft-' + i;
  label.htmlFor = area.id;
  area.rows = 10;
  area.value = (g.draft || {}).body || '';
  const btn = el('button', 'Accept into the knowledge base');
  const out = el('p', null, 'muted');
  out.setAttribute('role', 'status');
  btn.onclick = async () => {
    try {
      const r = await api('POST', '/api/kb/articles', { text: area.value });
      out.textContent = `Accepted as ${r.document} (version ${r.version}); the selector uses it from now on.`;
      out.className = 'ok';
    } catch (e) { out.textContent = 'Error: ' + e.message; out.className = 'error'; }
  };
  sec.append(label, area, btn, out);
  return sec;
}

async function loadGaps() {
  const r = await api('GET', '/api/kb/gaps');
  $('gaps-summary').textContent = `${r.weak} of ${r.tickets} tickets since ${r.since} match the knowledge base weakly (best score under ${r.weak_score})${r.unreadable ? `; ${r.unreadable} could not be read` : ''}.`;
  const box = $('gaps');
  box.replaceChildren();
  if (!r.groups.length) box.append(el('p', 'No gap: every recent ticket has a good article.', 'muted'));
  r.groups.forEach((g, i) => box.append(gapGroup(g, i)));
  showError($('gaps-error'), null);
}

pages.knowledge = {
  show: () => loadGaps().catch((e) => showError($('gaps-error'), e)),
};
