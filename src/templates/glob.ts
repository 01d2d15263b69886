/**
 * Patterns in a template config are globs, not regular expressions (no backtracking to exploit, and
 * they read like the image names and volume names they match): `*` matches any run of characters
 * except `/`, `**` any run at all, every other character itself.
 *
 * @example
 * globMatch('wsup-test:*', 'wsup-test:latest'); // true
 * globMatch('wsup-test:*', 'evil/wsup-test:x'); // false
 */
export function globMatch(pattern: string, value: string): boolean {
  return compile(pattern).test(value);
}

const cache = new Map<string, RegExp>();

function compile(pattern: string): RegExp {
  let re = cache.get(pattern);
  if (re !== undefined) return re;
  let src = '';
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '*' && pattern[i + 1] === '*') {
      src += '[\\s\\S]*';
      i++;
    } else if (c === '*') src += '[^/]*';
    else src += c.replace(/[\\^$.|?+()[\]{}-]/g, '\\$&');
  }
  re = new RegExp(`^${src}$`);
  cache.set(pattern, re);
  return re;
}
