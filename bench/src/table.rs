//! Markdown tables with padded columns, readable both raw and rendered.

/// How a column's cells line up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    Right,
}

/// Renders a Markdown table; every row must have one cell per header.
pub(crate) fn render(headers: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|(h, _)| width(h).max(3)).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(width(cell));
        }
    }
    let mut out = String::new();
    let titles: Vec<String> = headers.iter().map(|(h, _)| (*h).to_owned()).collect();
    push_row(&mut out, &titles, headers, &widths);
    out.push('|');
    for ((_, align), w) in headers.iter().zip(&widths) {
        match align {
            Align::Left => out.push_str(&format!(" {} |", "-".repeat(*w))),
            Align::Right => out.push_str(&format!(" {}: |", "-".repeat(w - 1))),
        }
    }
    out.push('\n');
    for row in rows {
        push_row(&mut out, row, headers, &widths);
    }
    out
}

fn push_row(out: &mut String, cells: &[String], headers: &[(&str, Align)], widths: &[usize]) {
    out.push('|');
    for ((cell, (_, align)), w) in cells.iter().zip(headers).zip(widths) {
        let pad = " ".repeat(w - width(cell));
        match align {
            Align::Left => out.push_str(&format!(" {cell}{pad} |")),
            Align::Right => out.push_str(&format!(" {pad}{cell} |")),
        }
    }
    out.push('\n');
}

/// Display width in characters; our cells hold no wide characters, only `µ` and the like.
fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_and_aligns() {
        let table = render(
            &[("name", Align::Left), ("µs", Align::Right)],
            &[
                vec!["a".into(), "12".into()],
                vec!["bcdef".into(), "3".into()],
            ],
        );
        assert_eq!(
            table,
            "| name  |  µs |\n| ----- | --: |\n| a     |  12 |\n| bcdef |   3 |\n"
        );
    }
}
