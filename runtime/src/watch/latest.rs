//! The hand-off between the capture thread and the inference thread: a bounded
//! `heapless` queue of one frame, plus the capture thread's notices.
//!
//! A live source never waits: when the inference thread is busy, the newest frame
//! replaces the waiting one and the stale one is counted as dropped. Any other source
//! waits until its frame is taken, so nothing is lost.

use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::Duration;

use heapless::Deque;
use heapless::spsc::Queue;

use crate::source::Frame;

/// Something the capture thread wants reported, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum Notice {
    /// A frame was unusable and skipped.
    Skipped { reason: String },
    /// The source went away; the next attempt to reopen it is `retry_in` away.
    Disconnected { reason: String, retry_in: Duration },
    /// The source is back after a disconnect.
    Reconnected,
    /// The source failed for good.
    Failed { reason: String },
}

/// What the capture side counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureCounts {
    /// Frames the source delivered.
    pub seen: u64,
    /// Frames replaced by a newer one before inference took them.
    pub dropped: u64,
    /// Frames that were corrupt or the wrong size.
    pub skipped: u64,
    pub disconnects: u64,
    pub reconnects: u64,
}

struct State {
    // holds one frame: a spsc queue of N keeps N - 1
    frames: Queue<Frame, 2>,
    notices: Deque<Notice, 32>,
    counts: CaptureCounts,
    ended: bool,
}

/// What [`Latest::take`] found.
#[derive(Debug)]
pub enum Taken {
    Frame(Frame),
    Notice(Notice),
    /// The source has ended and everything it sent was taken.
    End,
    /// Nothing arrived within the wait.
    Nothing,
}

pub struct Latest {
    state: Mutex<State>,
    changed: Condvar,
}

impl Default for Latest {
    fn default() -> Self {
        Latest {
            state: Mutex::new(State {
                frames: Queue::new(),
                notices: Deque::new(),
                counts: CaptureCounts::default(),
                ended: false,
            }),
            changed: Condvar::new(),
        }
    }
}

impl Latest {
    fn lock(&self) -> MutexGuard<'_, State> {
        // a panic elsewhere must not take the loop down with it
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Puts a frame from a live source: replaces a waiting frame (counted as dropped).
    pub fn put_newest(&self, frame: Frame) {
        let mut s = self.lock();
        s.counts.seen += 1;
        if s.frames.is_full() {
            s.frames.dequeue();
            s.counts.dropped += 1;
        }
        let _ = s.frames.enqueue(frame);
        self.changed.notify_all();
    }

    /// Puts a frame from a source that can wait: blocks while a frame is waiting, unless
    /// `stop()` turns true. Returns false when stopped before the frame was put.
    pub fn put_waiting(&self, frame: Frame, stop: &dyn Fn() -> bool) -> bool {
        let mut s = self.lock();
        s.counts.seen += 1;
        while s.frames.is_full() {
            if stop() {
                return false;
            }
            s = self
                .changed
                .wait_timeout(s, Duration::from_millis(20))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        let _ = s.frames.enqueue(frame);
        self.changed.notify_all();
        true
    }

    pub fn notice(&self, notice: Notice) {
        let mut s = self.lock();
        match &notice {
            Notice::Skipped { .. } => s.counts.skipped += 1,
            Notice::Disconnected { .. } => s.counts.disconnects += 1,
            Notice::Reconnected => s.counts.reconnects += 1,
            Notice::Failed { .. } => {}
        }
        if s.notices.is_full() {
            // bounded: the oldest notice goes; counts above still hold
            s.notices.pop_front();
        }
        let _ = s.notices.push_back(notice);
        self.changed.notify_all();
    }

    pub fn end(&self) {
        self.lock().ended = true;
        self.changed.notify_all();
    }

    pub fn counts(&self) -> CaptureCounts {
        self.lock().counts
    }

    /// Notices first, then the waiting frame; waits up to `wait` for either.
    pub fn take(&self, wait: Duration) -> Taken {
        let mut s = self.lock();
        let mut waited = false;
        loop {
            if let Some(n) = s.notices.pop_front() {
                return Taken::Notice(n);
            }
            if let Some(f) = s.frames.dequeue() {
                self.changed.notify_all();
                return Taken::Frame(f);
            }
            if s.ended {
                return Taken::End;
            }
            if waited {
                return Taken::Nothing;
            }
            s = self
                .changed
                .wait_timeout(s, wait)
                .unwrap_or_else(|e| e.into_inner())
                .0;
            waited = true;
        }
    }

    /// The waiting frame, if any, without blocking and without taking notices.
    pub fn take_frame(&self) -> Option<Frame> {
        let f = self.lock().frames.dequeue();
        self.changed.notify_all();
        f
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn frame(seq: u64) -> Frame {
        Frame {
            image: image::RgbImage::new(1, 1),
            seq,
            label: String::new(),
            captured_at: SystemTime::now(),
            capture_s: 0.0,
        }
    }

    #[test]
    fn newest_frame_wins_and_stale_ones_are_counted() {
        let l = Latest::default();
        for seq in 0..5 {
            l.put_newest(frame(seq));
        }
        match l.take(Duration::ZERO) {
            Taken::Frame(f) => assert_eq!(f.seq, 4),
            other => panic!("{other:?}"),
        }
        assert!(matches!(l.take(Duration::ZERO), Taken::Nothing));
        let c = l.counts();
        assert_eq!((c.seen, c.dropped), (5, 4));
    }

    #[test]
    fn notices_come_before_frames_and_end_comes_last() {
        let l = Latest::default();
        l.put_newest(frame(0));
        l.notice(Notice::Skipped {
            reason: "corrupt".into(),
        });
        l.end();
        assert!(matches!(l.take(Duration::ZERO), Taken::Notice(_)));
        assert!(matches!(l.take(Duration::ZERO), Taken::Frame(_)));
        assert!(matches!(l.take(Duration::ZERO), Taken::End));
        assert_eq!(l.counts().skipped, 1);
    }

    #[test]
    fn waiting_puts_block_until_taken_and_lose_nothing() {
        let l = Latest::default();
        std::thread::scope(|s| {
            s.spawn(|| {
                for seq in 0..20 {
                    assert!(l.put_waiting(frame(seq), &|| false));
                }
                l.end();
            });
            let mut got = Vec::new();
            loop {
                match l.take(Duration::from_millis(50)) {
                    Taken::Frame(f) => got.push(f.seq),
                    Taken::End => break,
                    _ => {}
                }
            }
            assert_eq!(got, (0..20).collect::<Vec<_>>());
        });
        assert_eq!(l.counts().dropped, 0);
    }
}
