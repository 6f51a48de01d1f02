//! Python's `fnmatch.fnmatchcase` on POSIX, which Portage uses to match
//! `PORTAGE_XATTR_EXCLUDE` patterns against xattr names.
//!
//! Own code rather than a glob crate: the glob crates (`glob`, `globset`)
//! follow shell or gitignore rules (a `[` without `]` is an error, `**` and
//! `/` are special, `\` escapes), while Python's fnmatch has none of
//! these; tests/gentoo_env.rs compares this one with Python's own.

/// Python's `fnmatch.fnmatchcase` on POSIX, which Portage uses for
/// `PORTAGE_XATTR_EXCLUDE`: `*` any run (including `.`), `?` one character,
/// `[abc]`, `[a-z]`, `[!abc]`; a `[` without a closing `]` is literal.
pub fn fnmatch(pattern: &str, name: &str) -> bool {
    let tokens = tokenize(pattern);
    let name: Vec<char> = name.chars().collect();
    // Classic single-backtrack-point wildcard matching.
    let (mut t, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match tokens.get(t) {
            Some(Token::Star) => {
                star = Some((t, n));
                t += 1;
                continue;
            }
            Some(tok) if tok.matches(name[n]) => {
                t += 1;
                n += 1;
                continue;
            }
            _ => {}
        }
        match star {
            Some((st, sn)) => {
                t = st + 1;
                n = sn + 1;
                star = Some((st, sn + 1));
            }
            None => return false,
        }
    }
    tokens[t..].iter().all(|x| matches!(x, Token::Star))
}

enum Token {
    Char(char),
    Any,
    Star,
    Class {
        negated: bool,
        ranges: Vec<(char, char)>,
    },
}

impl Token {
    fn matches(&self, c: char) -> bool {
        match self {
            Token::Char(x) => *x == c,
            Token::Any => true,
            Token::Star => false,
            Token::Class { negated, ranges } => {
                ranges.iter().any(|&(lo, hi)| lo <= c && c <= hi) != *negated
            }
        }
    }
}

fn tokenize(pattern: &str) -> Vec<Token> {
    let p: Vec<char> = pattern.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < p.len() {
        match p[i] {
            '*' => {
                if !matches!(out.last(), Some(Token::Star)) {
                    out.push(Token::Star);
                }
                i += 1;
            }
            '?' => {
                out.push(Token::Any);
                i += 1;
            }
            '[' => {
                // Find the closing `]`; a `!` and then a `]` right after the
                // `[` are part of the set.
                let mut j = i + 1;
                if j < p.len() && p[j] == '!' {
                    j += 1;
                }
                if j < p.len() && p[j] == ']' {
                    j += 1;
                }
                while j < p.len() && p[j] != ']' {
                    j += 1;
                }
                if j >= p.len() {
                    out.push(Token::Char('['));
                    i += 1;
                    continue;
                }
                let mut set = &p[i + 1..j];
                let negated = set.first() == Some(&'!');
                if negated {
                    set = &set[1..];
                }
                let mut ranges = Vec::new();
                let mut k = 0;
                while k < set.len() {
                    if k + 2 < set.len() && set[k + 1] == '-' {
                        // An inverted range (z-a) matches nothing, as in Python.
                        ranges.push((set[k], set[k + 2]));
                        k += 3;
                    } else {
                        ranges.push((set[k], set[k]));
                        k += 1;
                    }
                }
                out.push(Token::Class { negated, ranges });
                i = j + 1;
            }
            c => {
                out.push(Token::Char(c));
                i += 1;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnmatch_like_python() {
        let cases: &[(&str, &str, bool)] = &[
            ("security.*", "security.ima", true),
            ("security.*", "security.", true),
            ("security.*", "securityXima", false),
            ("security.ima", "security.ima", true),
            ("security.ima", "security.imax", false),
            ("user.*", "security.ima", false),
            ("*", "", true),
            ("*", "anything", true),
            ("*.ima", "security.ima", true),
            ("s*y.i*a", "security.ima", true),
            ("s*y.i*b", "security.ima", false),
            ("security.im?", "security.ima", true),
            ("security.im?", "security.im", false),
            ("security.[ij]ma", "security.ima", true),
            ("security.[!i]ma", "security.ima", false),
            ("security.[!x]ma", "security.ima", true),
            ("security.[a-j]ma", "security.ima", true),
            ("security.[j-z]ma", "security.ima", false),
            ("security.[z-a]ma", "security.ima", false),
            ("[]]", "]", true),
            ("[!]]", "]", false),
            ("[!]]", "a", true),
            ("security.[ima", "security.[ima", true),
            ("security.[ima", "security.ima", false),
            ("**a", "a", true),
            ("*a*b*c*", "xaybzc", true),
            ("*a*b*c*", "xaybz", false),
            ("", "", true),
            ("", "a", false),
        ];
        for &(p, n, want) in cases {
            assert_eq!(fnmatch(p, n), want, "fnmatch({p:?}, {n:?})");
        }
    }
}
