/* Time on item: only the time the page was visible counts. */

class Stopwatch {
  constructor() {
    this.elapsed = 0;
    this.since = null;
  }
  start() {
    this.elapsed = 0;
    this.since = document.hidden ? null : performance.now();
  }
  pause() {
    if (this.since !== null) {
      this.elapsed += performance.now() - this.since;
      this.since = null;
    }
  }
  resume() {
    if (this.since === null && !document.hidden) this.since = performance.now();
  }
  read() {
    return Math.round(this.elapsed + (this.since === null ? 0 : performance.now() - this.since));
  }
}

export const itemWatch = new Stopwatch();
export const editWatch = new Stopwatch();
let activeWatch = itemWatch;

/** Which watch runs while the page is visible: the pair's, or the change's while one is edited. */
export function timeWith(watch) {
  activeWatch = watch;
}

export function pauseWhileHidden() {
  document.addEventListener("visibilitychange", () => {
    if (document.hidden) activeWatch.pause();
    else activeWatch.resume();
  });
}
