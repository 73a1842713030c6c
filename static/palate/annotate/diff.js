/* Word-level differences between the two responses, marked in their plain text. */

const MAX_DIFF_CELLS = 4_000_000;

function words(text) {
  return text.match(/\s+|\S+/g) || [];
}

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

/** Plain text with <mark> around differing runs, built node by node (never as HTML). */
function renderMarkedText(container, tokens, marks) {
  const fragment = document.createDocumentFragment();
  let run = "";
  let runMarked = false;
  const closeRun = () => {
    if (!run) return;
    if (runMarked) {
      const mark = document.createElement("mark");
      mark.textContent = run;
      fragment.append(mark);
    } else {
      fragment.append(document.createTextNode(run));
    }
    run = "";
  };
  tokens.forEach((token, index) => {
    const isSpace = !/\S/.test(token);
    // Spaces between two marked words on one line stay inside the mark, so a changed phrase reads as one.
    let marked = marks[index];
    if (isSpace) {
      let next = index + 1;
      while (next < tokens.length && !/\S/.test(tokens[next])) next += 1;
      marked = runMarked && next < tokens.length && marks[next] && !token.includes("\n");
    }
    if (marked !== runMarked) {
      closeRun();
      runMarked = marked;
    }
    run += token;
  });
  closeRun();
  const body = document.createElement("div");
  body.className = "ws-plain";
  body.append(fragment);
  container.replaceChildren(body);
}

/** The two responses as plain text, each with the words the other does not have marked. */
export function renderDifference(leftContainer, rightContainer, leftText, rightText) {
  const leftTokens = words(leftText);
  const rightTokens = words(rightText);
  const [leftMarks, rightMarks] = differingTokens(leftTokens, rightTokens);
  renderMarkedText(leftContainer, leftTokens, leftMarks);
  renderMarkedText(rightContainer, rightTokens, rightMarks);
}
