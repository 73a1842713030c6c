/* Word-level differences between the two responses, marked in their rendered text. */

const MAX_DIFF_CELLS = 4_000_000;

/** For two token lists, which non-space tokens are not part of the longest common subsequence. */
function differingTokens(first, second) {
  const indexA = [];
  const indexB = [];
  first.forEach((token, index) => /\S/.test(token) && indexA.push(index));
  second.forEach((token, index) => /\S/.test(token) && indexB.push(index));
  const a = indexA.map((index) => first[index]);
  const b = indexB.map((index) => second[index]);
  const markA = new Array(first.length).fill(false);
  const markB = new Array(second.length).fill(false);
  let start = 0;
  while (start < a.length && start < b.length && a[start] === b[start]) start += 1;
  let endA = a.length;
  let endB = b.length;
  while (endA > start && endB > start && a[endA - 1] === b[endB - 1]) {
    endA -= 1;
    endB -= 1;
  }
  const n = endA - start;
  const m = endB - start;
  if (n * m > MAX_DIFF_CELLS) {
    // Too long to align word by word: mark words the other side does not have as often.
    const counts = (list, from, to) => {
      const map = new Map();
      for (let i = from; i < to; i += 1) map.set(list[i], (map.get(list[i]) || 0) + 1);
      return map;
    };
    const inB = counts(b, start, endB);
    const inA = counts(a, start, endA);
    for (let i = start; i < endA; i += 1) {
      const left = inB.get(a[i]) || 0;
      if (left > 0) inB.set(a[i], left - 1);
      else markA[indexA[i]] = true;
    }
    for (let j = start; j < endB; j += 1) {
      const left = inA.get(b[j]) || 0;
      if (left > 0) inA.set(b[j], left - 1);
      else markB[indexB[j]] = true;
    }
    return [markA, markB];
  }
  const width = m + 1;
  const table = new Uint32Array((n + 1) * width);
  for (let i = n - 1; i >= 0; i -= 1) {
    for (let j = m - 1; j >= 0; j -= 1) {
      table[i * width + j] =
        a[start + i] === b[start + j]
          ? table[(i + 1) * width + j + 1] + 1
          : Math.max(table[(i + 1) * width + j], table[i * width + j + 1]);
    }
  }
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (a[start + i] === b[start + j]) {
      i += 1;
      j += 1;
    } else if (table[(i + 1) * width + j] >= table[i * width + j + 1]) {
      markA[indexA[start + i]] = true;
      i += 1;
    } else {
      markB[indexB[start + j]] = true;
      j += 1;
    }
  }
  for (; i < n; i += 1) markA[indexA[start + i]] = true;
  for (; j < m; j += 1) markB[indexB[start + j]] = true;
  return [markA, markB];
}

/** The rendered text's words, each with the text node it sits in and where. */
function renderedTokens(container) {
  const tokens = [];
  const walker = document.createTreeWalker(container, NodeFilter.SHOW_TEXT);
  for (let node = walker.nextNode(); node; node = walker.nextNode()) {
    for (const match of node.data.matchAll(/\s+|\S+/g)) {
      tokens.push({ node, start: match.index, end: match.index + match[0].length, text: match[0] });
    }
  }
  return tokens;
}

/** Wraps the marked words in <mark>, text node by text node, so the rendered markup stays as it was. Spaces
 * between two marked words of one node stay inside the mark, so a changed phrase reads as one. */
function markTokens(tokens, marks) {
  const byNode = new Map();
  tokens.forEach((token, index) => {
    if (!byNode.has(token.node)) byNode.set(token.node, []);
    byNode.get(token.node).push({ ...token, marked: marks[index] });
  });
  for (const [node, nodeTokens] of byNode) {
    if (!nodeTokens.some((token) => token.marked)) continue;
    const runs = [];
    nodeTokens.forEach((token, index) => {
      let marked = token.marked;
      if (!/\S/.test(token.text)) {
        const next = nodeTokens[index + 1];
        const previous = runs[runs.length - 1];
        marked = Boolean(previous && previous.marked && next && next.marked && !token.text.includes("\n"));
      }
      const last = runs[runs.length - 1];
      if (last && last.marked === marked) last.end = token.end;
      else runs.push({ start: token.start, end: token.end, marked });
    });
    const fragment = document.createDocumentFragment();
    for (const run of runs) {
      const text = node.data.slice(run.start, run.end);
      if (run.marked) {
        const mark = document.createElement("mark");
        mark.textContent = text;
        fragment.append(mark);
      } else {
        fragment.append(document.createTextNode(text));
      }
    }
    node.replaceWith(fragment);
  }
}

// Below this share of words in common (of the longer response), marks would cover nearly everything and say
// nothing: the page says the responses differ throughout instead.
const SHARED_AT_LEAST = 1 / 3;

/** Shows both responses rendered (from the server's sanitised HTML) with the words the other does not have
 * marked; returns {throughout: true}, marking nothing, when they have too little in common for marks to help. */
export function renderDifference(leftContainer, rightContainer, leftHtml, rightHtml) {
  leftContainer.innerHTML = leftHtml; // sanitised by the server (annotate/rendering.py)
  rightContainer.innerHTML = rightHtml; // sanitised by the server
  const leftTokens = renderedTokens(leftContainer);
  const rightTokens = renderedTokens(rightContainer);
  const [leftMarks, rightMarks] = differingTokens(
    leftTokens.map((token) => token.text),
    rightTokens.map((token) => token.text),
  );
  const count = (tokens, marks) => {
    let words = 0;
    let marked = 0;
    tokens.forEach((token, index) => {
      if (!/\S/.test(token.text)) return;
      words += 1;
      if (marks[index]) marked += 1;
    });
    return { words, shared: words - marked };
  };
  const left = count(leftTokens, leftMarks);
  const right = count(rightTokens, rightMarks);
  const longest = Math.max(left.words, right.words);
  const shared = Math.min(left.shared, right.shared);
  if (longest > 0 && shared / longest < SHARED_AT_LEAST) return { throughout: true };
  markTokens(leftTokens, leftMarks);
  markTokens(rightTokens, rightMarks);
  return { throughout: false };
}
