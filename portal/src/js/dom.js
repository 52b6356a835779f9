// Small DOM helpers. The portal never builds HTML from strings (the CSP
// enforces Trusted Types, so innerHTML would throw): every element is made
// with createElement and every text goes in through textContent.

/** The element with `id`; throws when the page lacks it (a broken build). */
export function $(id) {
  const found = document.getElementById(id);
  if (!found) throw new Error(`no #${id} in the page`);
  return found;
}

/**
 * A new element: `attrs` are attributes (`class`, `data-*`, `type`...) except
 * `text` (its text) and `on*` functions (listeners); `children` are nodes or
 * strings.
 */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === 'text') node.textContent = String(value);
    else if (name.startsWith('on') && typeof value === 'function') {
      node.addEventListener(name.slice(2), value);
    } else node.setAttribute(name, value === true ? '' : String(value));
  }
  for (const child of children) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

/** Replaces the children of `node` with `children`. */
export function fill(node, ...children) {
  node.replaceChildren(...children.flat().filter((c) => c !== null && c !== undefined));
}

/** Sets the text of #id; with `kind` ("ok", "error") as its data-kind. */
export function say(id, text, kind = '') {
  const node = $(id);
  node.textContent = text;
  if (kind) node.dataset.kind = kind;
  else delete node.dataset.kind;
}

/** Unix seconds as the browser's local date and time. */
export function when(unixSeconds) {
  if (!unixSeconds) return '';
  return new Date(unixSeconds * 1000).toLocaleString();
}

/** Seconds as m:ss (or h:mm:ss). */
export function duration(seconds) {
  const s = Math.max(0, Math.round(seconds || 0));
  const h = Math.floor(s / 3600);
  const m = Math.floor((s % 3600) / 60);
  const ss = String(s % 60).padStart(2, '0');
  return h ? `${h}:${String(m).padStart(2, '0')}:${ss}` : `${m}:${ss}`;
}
