//! The token reader under the tidy checks: Rust source as tokens, with comments, string and
//! char literals, lifetimes and numbers skipped (`tokens`); the `#[cfg(test)]` items left out
//! (`without_test_items`); and every path the code names, `use` trees expanded, aliases followed
//! and `core::`/`alloc::` read as `std::` (`paths`). It knows nothing of the rules (`mod.rs`).

use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Token {
    Ident(String),
    /// `::`
    PathSep,
    Punct(char),
}

/// Rust source as tokens, without comments, string and char literals, lifetimes and numbers.
pub(super) fn tokens(source: &str) -> Vec<Token> {
    let chars: Vec<char> = source.chars().collect();
    let at = |index: usize| chars.get(index).copied().unwrap_or('\0');
    let mut found = Vec::new();
    let mut index = 0;
    while index < chars.len() {
        let c = at(index);
        if c.is_whitespace() {
            index += 1;
        } else if c == '/' && at(index + 1) == '/' {
            while index < chars.len() && at(index) != '\n' {
                index += 1;
            }
        } else if c == '/' && at(index + 1) == '*' {
            index = block_comment_end(&chars, index);
        } else if let Some(end) = raw_string_end(&chars, index) {
            index = end;
        } else if c == '"' || ((c == 'b' || c == 'c') && at(index + 1) == '"') {
            index += if c == '"' { 1 } else { 2 };
            while index < chars.len() && at(index) != '"' {
                index += if at(index) == '\\' { 2 } else { 1 };
            }
            index += 1;
        } else if c == '\'' || (c == 'b' && at(index + 1) == '\'') {
            index = char_or_lifetime_end(&chars, index);
        } else if c.is_alphabetic() || c == '_' {
            let start = index;
            while at(index).is_alphanumeric() || at(index) == '_' {
                index += 1;
            }
            let word: String = chars.get(start..index).unwrap_or_default().iter().collect();
            if word == "r" && at(index) == '#' {
                // A raw identifier, `r#type`: the word after the hash.
                index += 1;
                continue;
            }
            found.push(Token::Ident(word));
        } else if c.is_ascii_digit() {
            while at(index).is_alphanumeric() || at(index) == '_' {
                index += 1;
            }
        } else if c == ':' && at(index + 1) == ':' {
            found.push(Token::PathSep);
            index += 2;
        } else {
            found.push(Token::Punct(c));
            index += 1;
        }
    }
    found
}

/// Where a block comment starting at `index` ends, the comments nested in it included.
fn block_comment_end(chars: &[char], mut index: usize) -> usize {
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut depth = 0;
    loop {
        if at(index) == '/' && at(index + 1) == '*' {
            depth += 1;
            index += 2;
        } else if at(index) == '*' && at(index + 1) == '/' {
            depth -= 1;
            index += 2;
            if depth == 0 {
                break;
            }
        } else if index >= chars.len() {
            break;
        } else {
            index += 1;
        }
    }
    index
}

/// Where a char literal (`'a'`, `'\n'`, `b'u'`) or a lifetime (`'a`) starting at `index` ends.
fn char_or_lifetime_end(chars: &[char], index: usize) -> usize {
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    // A char literal ends with a quote within a few characters; a lifetime does not.
    let start = if at(index) == '\'' {
        index + 1
    } else {
        index + 2
    };
    let end = if at(start) == '\\' {
        (start + 2..chars.len()).find(|&i| at(i) == '\'')
    } else if at(start + 1) == '\'' {
        Some(start + 1)
    } else {
        None
    };
    match end {
        Some(end) => end + 1,
        None => {
            let mut index = start;
            while at(index).is_alphanumeric() || at(index) == '_' {
                index += 1;
            }
            index
        }
    }
}

/// Where a raw string starting at `index` (`r"`, `r#"`, `br##"`, ...) ends, if one starts there.
fn raw_string_end(chars: &[char], index: usize) -> Option<usize> {
    let at = |i: usize| chars.get(i).copied().unwrap_or('\0');
    let mut cursor = index;
    if at(cursor) == 'b' || at(cursor) == 'c' {
        cursor += 1;
    }
    if at(cursor) != 'r' || (index > 0 && (at(index - 1).is_alphanumeric() || at(index - 1) == '_'))
    {
        return None;
    }
    cursor += 1;
    let mut hashes = 0;
    while at(cursor) == '#' {
        hashes += 1;
        cursor += 1;
    }
    if at(cursor) != '"' {
        return None;
    }
    cursor += 1;
    while cursor < chars.len() {
        if at(cursor) == '"' && (1..=hashes).all(|n| at(cursor + n) == '#') {
            return Some(cursor + 1 + hashes);
        }
        cursor += 1;
    }
    Some(cursor)
}

fn is_punct(token: Option<&Token>, c: char) -> bool {
    token == Some(&Token::Punct(c))
}

pub(super) fn is_ident(token: Option<&Token>, word: &str) -> bool {
    matches!(token, Some(Token::Ident(found)) if found == word)
}

/// The tokens without the items marked `#[cfg(test)]` (a test module, a test-only impl...).
pub(super) fn without_test_items(tokens: &[Token]) -> Vec<Token> {
    let test_attribute = |i: usize| {
        is_punct(tokens.get(i), '#')
            && is_punct(tokens.get(i + 1), '[')
            && is_ident(tokens.get(i + 2), "cfg")
            && is_punct(tokens.get(i + 3), '(')
            && is_ident(tokens.get(i + 4), "test")
            && is_punct(tokens.get(i + 5), ')')
            && is_punct(tokens.get(i + 6), ']')
    };
    let mut kept = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        if !test_attribute(index) {
            kept.extend(tokens.get(index).cloned());
            index += 1;
            continue;
        }
        // Skip the item: up to a `;` outside any brackets, or the end of its first `{ }` block.
        index += 7;
        let mut depth = 0_i32;
        while let Some(token) = tokens.get(index) {
            index += 1;
            match token {
                Token::Punct('{' | '(' | '[') => depth += 1,
                Token::Punct('}' | ')' | ']') => {
                    depth -= 1;
                    if depth == 0 && *token == Token::Punct('}') {
                        break;
                    }
                }
                Token::Punct(';') if depth == 0 => break,
                _ => {}
            }
        }
    }
    kept
}

/// Every path the code names, `use` trees expanded and aliases followed, with `core::` and
/// `alloc::` read as `std::`.
pub(super) fn paths(tokens: &[Token]) -> Vec<Vec<String>> {
    let mut uses: Vec<(Vec<String>, String)> = Vec::new();
    let mut named: Vec<Vec<String>> = Vec::new();
    let mut index = 0;
    while index < tokens.len() {
        if is_ident(tokens.get(index), "use") {
            index = use_tree(tokens, index + 1, Vec::new(), &mut uses);
            continue;
        }
        let before = |back: usize| index.checked_sub(back).and_then(|i| tokens.get(i));
        // A path starts at a name that no `::` joins to one before it (`::std` starts one).
        let joined = before(1) == Some(&Token::PathSep)
            && matches!(before(2), Some(Token::Ident(_) | Token::Punct('>')));
        let starts_path = matches!(tokens.get(index), Some(Token::Ident(_))) && !joined;
        if !starts_path {
            index += 1;
            continue;
        }
        let mut path = Vec::new();
        while let Some(Token::Ident(segment)) = tokens.get(index) {
            path.push(segment.clone());
            if tokens.get(index + 1) == Some(&Token::PathSep) {
                index += 2;
            } else {
                index += 1;
                break;
            }
        }
        named.push(path);
    }
    let aliases: HashMap<String, Vec<String>> = uses
        .iter()
        .map(|(path, alias)| (alias.clone(), path.clone()))
        .collect();
    let mut all: Vec<Vec<String>> = uses.into_iter().map(|(path, _)| path).collect();
    for path in named {
        let resolved = match path.split_first() {
            Some((first, rest)) if path.len() > 1 || aliases.contains_key(first) => {
                match aliases.get(first) {
                    Some(full) => full.iter().chain(rest).cloned().collect(),
                    None => path,
                }
            }
            _ => continue,
        };
        all.push(resolved);
    }
    all.into_iter().map(canonical).collect()
}

fn canonical(mut path: Vec<String>) -> Vec<String> {
    if let Some(first) = path.first_mut()
        && (first == "core" || first == "alloc")
    {
        *first = "std".to_owned();
    }
    path
}

/// Reads one `use` tree from `index`; pushes each full path with the name it is known by, and
/// returns where the tree ends.
fn use_tree(
    tokens: &[Token],
    mut index: usize,
    prefix: Vec<String>,
    uses: &mut Vec<(Vec<String>, String)>,
) -> usize {
    let mut path = prefix;
    if tokens.get(index) == Some(&Token::PathSep) {
        index += 1;
    }
    loop {
        match tokens.get(index) {
            // `a::{self, b}` names `a`; a leading `self::` stays, it says where the path starts.
            Some(Token::Ident(segment)) if segment == "self" && !path.is_empty() => {
                index += 1;
            }
            Some(Token::Ident(segment)) => {
                path.push(segment.clone());
                index += 1;
            }
            Some(Token::Punct('*')) => {
                path.push("*".to_owned());
                // A glob brings in no name of its own, but its module is named.
                uses.push((path, String::new()));
                return skip_semicolon(tokens, index + 1);
            }
            Some(Token::Punct('{')) => {
                index += 1;
                while !is_punct(tokens.get(index), '}') && index < tokens.len() {
                    index = use_tree(tokens, index, path.clone(), uses);
                    if is_punct(tokens.get(index), ',') {
                        index += 1;
                    }
                }
                return skip_semicolon(tokens, index + 1);
            }
            _ => break,
        }
        if tokens.get(index) == Some(&Token::PathSep) {
            index += 1;
        } else {
            break;
        }
    }
    let mut name = path.last().cloned().unwrap_or_default();
    if is_ident(tokens.get(index), "as")
        && let Some(Token::Ident(alias)) = tokens.get(index + 1)
    {
        name = alias.clone();
        index += 2;
    }
    uses.push((path, name));
    skip_semicolon(tokens, index)
}

fn skip_semicolon(tokens: &[Token], index: usize) -> usize {
    if is_punct(tokens.get(index), ';') {
        index + 1
    } else {
        index
    }
}
