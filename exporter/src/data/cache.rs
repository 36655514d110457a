//! Decoded images kept for reuse, within a budget of bytes: a folder of 100 000 frames is
//! read as training reaches each image, never all at once.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use anyhow::Result;
use image::RgbImage;

/// Images by key (a line of the folder), at most `budget` bytes of pixels; the least
/// recently used go first. Images still held by a batch stay alive outside the budget
/// until the batch is dropped.
pub struct ImageCache {
    budget: u64,
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    /// key → (image, last use)
    images: HashMap<usize, (Arc<RgbImage>, u64)>,
    bytes: u64,
    clock: u64,
    hits: u64,
    misses: u64,
}

/// What the cache holds and has done.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct CacheStats {
    pub images: usize,
    pub bytes: u64,
    pub hits: u64,
    pub misses: u64,
}

fn bytes_of(image: &RgbImage) -> u64 {
    image.as_raw().len() as u64
}

impl ImageCache {
    pub fn new(budget: u64) -> ImageCache {
        ImageCache {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    /// The image under `key`, from the cache or from `load` (called without the lock, so
    /// other threads are not held up while an image decodes).
    pub fn get(
        &self,
        key: usize,
        load: impl FnOnce() -> Result<RgbImage>,
    ) -> Result<Arc<RgbImage>> {
        {
            let mut inner = self.lock();
            inner.clock += 1;
            let now = inner.clock;
            if let Some((image, used)) = inner.images.get_mut(&key) {
                *used = now;
                let image = image.clone();
                inner.hits += 1;
                return Ok(image);
            }
            inner.misses += 1;
        }
        let image = Arc::new(load()?);
        let mut inner = self.lock();
        inner.clock += 1;
        let now = inner.clock;
        if let Some((old, _)) = inner.images.insert(key, (image.clone(), now)) {
            inner.bytes -= bytes_of(&old);
        }
        inner.bytes += bytes_of(&image);
        while inner.bytes > self.budget && inner.images.len() > 1 {
            let Some(oldest) = inner
                .images
                .iter()
                .filter(|(k, _)| **k != key)
                .min_by_key(|(_, (_, used))| *used)
                .map(|(k, _)| *k)
            else {
                break;
            };
            if let Some((gone, _)) = inner.images.remove(&oldest) {
                inner.bytes -= bytes_of(&gone);
            }
        }
        Ok(image)
    }

    pub fn stats(&self) -> CacheStats {
        let inner = self.lock();
        CacheStats {
            images: inner.images.len(),
            bytes: inner.bytes,
            hits: inner.hits,
            misses: inner.misses,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // the map stays consistent at every await-free step, so a poisoned lock is usable
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(side: u32, v: u8) -> RgbImage {
        RgbImage::from_pixel(side, side, image::Rgb([v, v, v]))
    }

    #[test]
    fn the_least_recently_used_go_when_the_budget_is_passed() {
        // 10×10 RGB = 300 bytes; room for three
        let cache = ImageCache::new(900);
        let loads = std::cell::Cell::new(0);
        let get = |k: usize| {
            cache
                .get(k, || {
                    loads.set(loads.get() + 1);
                    Ok(image(10, k as u8))
                })
                .unwrap()
        };
        for k in 0..3 {
            assert_eq!(get(k).get_pixel(0, 0).0[0], k as u8);
        }
        assert_eq!(loads.get(), 3);
        get(0); // 0 is now the most recent; 1 the least
        assert_eq!(loads.get(), 3);
        get(3); // over budget: 1 goes
        let s = cache.stats();
        assert_eq!((s.images, s.bytes, s.hits, s.misses), (3, 900, 1, 4));
        get(2);
        get(0);
        assert_eq!(loads.get(), 4);
        get(1);
        assert_eq!(loads.get(), 5, "1 was evicted and is read again");
        // an image larger than the whole budget is still returned, and kept alone
        let big = cache.get(9, || Ok(image(40, 9))).unwrap();
        assert_eq!(big.width(), 40);
        assert_eq!(cache.stats().images, 1);
    }

    #[test]
    fn a_failed_load_is_an_error_and_is_not_cached() {
        let cache = ImageCache::new(1000);
        let e = cache
            .get(4, || anyhow::bail!("frame-4.png: not a PNG"))
            .unwrap_err();
        assert!(e.to_string().contains("frame-4.png"));
        assert_eq!(cache.stats().images, 0);
        assert!(cache.get(4, || Ok(image(2, 1))).is_ok());
    }
}
