//! Progress of a long audit, on stderr: an indicatif bar on a terminal, or
//! with `--progress` elsewhere one plain line a second (a log keeps lines,
//! not redraws). Stdout is never touched, so the audit's last line stays
//! `audit: H heights, T transactions, M mismatches`.

use std::io::{IsTerminal, Write};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

/// Draws each redraw of the bar as one line on stderr.
#[derive(Debug)]
struct LinesOnStderr;

impl TermLike for LinesOnStderr {
    fn width(&self) -> u16 {
        100
    }
    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }
    fn write_line(&self, s: &str) -> std::io::Result<()> {
        self.write_str(s)
    }
    /// indicatif writes a bar's (last) line with `write_str`, then blank
    /// fillers and `\r`: each non-blank piece is one line here.
    fn write_str(&self, s: &str) -> std::io::Result<()> {
        if s.trim().is_empty() {
            return Ok(());
        }
        writeln!(std::io::stderr(), "{}", s.trim_end())
    }
    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }
    fn flush(&self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

/// Where the audit's progress goes.
#[derive(Debug)]
pub(crate) struct Progress {
    bar: ProgressBar,
    /// Lines, not a bar: the final state stays as the last progress line.
    lines: bool,
}

impl Progress {
    /// A bar when stderr is a terminal, lines when `forced` on anything
    /// else, nothing otherwise.
    pub(crate) fn new(forced: bool) -> Self {
        let terminal = std::io::stderr().is_terminal();
        let target = if terminal {
            ProgressDrawTarget::stderr()
        } else if forced {
            ProgressDrawTarget::term_like_with_hz(Box::new(LinesOnStderr), 1)
        } else {
            ProgressDrawTarget::hidden()
        };
        let bar = ProgressBar::with_draw_target(Some(0), target);
        bar.set_style(
            ProgressStyle::with_template(
                "audit [{bar:30}] {pos}/{len} heights, {per_sec}, eta {eta}, {msg}",
            )
            .expect("a fixed template")
            .progress_chars("=> "),
        );
        Progress {
            bar,
            lines: forced && !terminal,
        }
    }

    /// Is anything drawn?
    pub(crate) fn visible(&self) -> bool {
        !self.bar.is_hidden()
    }

    /// The newest head seen.
    pub(crate) fn set_head(&self, head: u64) {
        self.bar.set_length(head);
    }

    /// Heights audited so far, with what they held.
    pub(crate) fn set_audited(&self, height: u64, transactions: u64, findings: usize) {
        self.bar.set_position(height);
        self.bar
            .set_message(format!("{transactions} transactions, {findings} findings"));
    }

    /// Print a line without tearing the bar.
    pub(crate) fn note(&self, line: &str) {
        if self.visible() {
            self.bar.suspend(|| eprintln!("{line}"));
        } else {
            eprintln!("{line}");
        }
    }

    /// Remove the bar (before the summary lines); as lines, write the
    /// final state (a short audit may finish before the first redraw).
    pub(crate) fn finish(&self) {
        if self.lines {
            self.bar.finish();
        } else {
            self.bar.finish_and_clear();
        }
    }
}
