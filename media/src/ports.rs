//! The relay's port range: RTP/RTCP pairs handed out and taken back.

use std::collections::VecDeque;

/// Even ports of a range, each the RTP half of an RTP/RTCP pair (RFC 3550
/// §11: RTCP on the next odd port).
///
/// Freed ports go to the back of the queue, so a port is reused as late as
/// possible: stray packets of a finished call do not reach the next one, and
/// the sockets of the old call have long been closed when it is bound again.
#[derive(Debug)]
pub struct PortPool {
    free: VecDeque<u16>,
    capacity: usize,
}

impl PortPool {
    /// Every even port in `min..=max` whose odd neighbour is in range too.
    pub fn new(min: u16, max: u16) -> Self {
        let first = min + (min % 2);
        let free: VecDeque<u16> = (first..max).step_by(2).collect();
        let capacity = free.len();
        Self { free, capacity }
    }

    /// The RTP port of a free pair.
    pub fn take(&mut self) -> Option<u16> {
        self.free.pop_front()
    }

    /// Returns a pair taken earlier.
    pub fn give(&mut self, rtp: u16) {
        debug_assert!(rtp.is_multiple_of(2));
        self.free.push_back(rtp);
    }

    /// Pairs not handed out.
    pub fn available(&self) -> usize {
        self.free.len()
    }

    /// Pairs in the range.
    pub fn capacity(&self) -> usize {
        self.capacity
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_start_even_and_stay_in_range() {
        let mut pool = PortPool::new(30001, 30010);
        let ports: Vec<u16> = std::iter::from_fn(|| pool.take()).collect();
        assert_eq!(ports, vec![30002, 30004, 30006, 30008]);
        assert_eq!(pool.capacity(), 4);
        assert_eq!(pool.available(), 0);
    }

    #[test]
    fn a_freed_pair_is_reused_last() {
        let mut pool = PortPool::new(40000, 40005);
        let a = pool.take().unwrap();
        pool.give(a);
        assert_eq!(pool.take(), Some(40002));
        assert_eq!(pool.take(), Some(40004));
        assert_eq!(pool.take(), Some(a));
        assert_eq!(pool.take(), None);
    }
}
