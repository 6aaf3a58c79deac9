// Text we did not write (a GPU process's name, a server's log line, a vendor tool's output, a file
// name from a remote listing) reaching the operator's terminal or a /metrics label (#26, item 5).
// Anyone on the machine can name a process, and any server can print anything: an OSC 52 in a
// process name writes the clipboard, OSC 0 sets the window title, a CSI clears the screen.

// eslint-disable-next-line no-control-regex
const CONTROL = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/;
// eslint-disable-next-line no-control-regex
const CONTROLS = /[\u0000-\u0008\u000a-\u001f\u007f-\u009f]/g;
// ESC sequences: CSI (ESC [ params final), OSC (ESC ] ... BEL or ST), DCS/SOS/PM/APC (ESC P, X, ^,
// _ ... ST), and any other ESC + one character. An unterminated string runs to the end.
const ESC_SEQUENCE =
  // eslint-disable-next-line no-control-regex
  /\u001b(?:\[[0-?]*[ -/]*[@-~]|\][^\u0007\u001b]*(?:\u0007|\u001b\\)?|[PX^_][^\u001b]*(?:\u001b\\)?|[\s\S]?)/g;
// eslint-disable-next-line no-control-regex
const SGR = /^\u001b\[[0-9;:]*m$/;

function visible(c: string): string {
  const n = c.charCodeAt(0);
  return n === 0x1b ? '\\e' : `\\x${n.toString(16).padStart(2, '0')}`;
}

/**
 * Safe for a terminal: escape sequences removed (colour codes kept with `keepColour`, for a log
 * line), every other control character shown as text (\x07, \x9b, \e); tabs stay. Text without
 * control characters is returned as it is (the common case costs one test).
 */
export function terminalSafe(s: string, keepColour = false): string {
  if (!CONTROL.test(s)) return s;
  return s
    .replace(ESC_SEQUENCE, (m) => (keepColour && SGR.test(m) ? m : ''))
    .replace(CONTROLS, (c) => {
      // A colour code kept above is the one control character left as it is.
      return c === '\u001b' ? c : visible(c);
    });
}

/** A name (a process's, a file's): one line, no control characters at all. */
export function safeName(s: string): string {
  return terminalSafe(s).split('\u001b').join('\\e');
}

/** True when a name holds a control character (a remote file name that must be refused). */
export function hasControl(s: string): boolean {
  return CONTROL.test(s) || s.includes('\u001b');
}

/** A Prometheus label value: the format's escapes (backslash, quote, newline), no other control character. */
export function labelSafe(s: string): string {
  return s
    .replace(/\\/g, '\\\\')
    .replace(/"/g, '\\"')
    .replace(/\n/g, '\\n')
    .replace(CONTROLS, (c) => visible(c).replace(/\\/g, '\\\\'));
}
