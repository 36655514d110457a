//! The public API: load a package, then caption frames and answer questions about them.

use std::path::Path;
use std::time::Instant;

use image::RgbImage;

use crate::error::{Error, Result};
use crate::frame::{Canvas, ImageFormat, Patches, Size};
use crate::generate::{Generated, Stop, check_room, greedy};
use crate::model::{DecoderGraph, DecoderSession, EmbeddingGraph, HeadsGraph, VisionGraph};
use crate::package::{
    CpuFeatures, DECODER_FILE, EMBEDDING_FILE, Package, Precision, TOKENIZER_FILE, VISION_FILE,
    choose,
};
use crate::text::{Prompt, TextTokenizer, TokenStream};

/// A loaded model package, ready to run.
pub struct Glimpse {
    pub package: Package,
    pub tokenizer: TextTokenizer,
    vision: VisionGraph,
    embedding: EmbeddingGraph,
    decoder: DecoderGraph,
    /// The matching heads, when the package has them.
    pub(crate) heads: Option<HeadsGraph>,
    /// Limit on generated tokens (the manifest's default unless changed).
    pub max_new_tokens: usize,
    /// The precision of the graphs that were loaded.
    pub precision: Precision,
}

/// An answer or caption, with where the time went (seconds).
#[derive(Debug, Clone, PartialEq)]
pub struct Answer {
    pub text: String,
    pub tokens: Vec<u32>,
    /// Whether the text is whole or was cut at a limit.
    pub stop: Stop,
    pub timings: Timings,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    pub preprocess_s: f64,
    pub vision_s: f64,
    pub prefill_s: f64,
    pub decode_s: f64,
}

/// A frame after the vision graph: what every prompt about it starts from.
pub struct ImageContext {
    pub embeddings: Vec<f32>,
    pub preprocess_s: f64,
    pub vision_s: f64,
}

/// The tokenizer and graphs of a package, each graph checked against the manifest before
/// it is optimised.
type Graphs = (
    TextTokenizer,
    VisionGraph,
    EmbeddingGraph,
    DecoderGraph,
    Option<HeadsGraph>,
);

fn load_graphs(package: &Package, precision: Precision) -> Result<Graphs> {
    let m = &package.manifest;
    // The tokenizer is parsed beside the graphs: a vocabulary of 262,144 tokens (Fuyu's)
    // takes a quarter of a second of JSON. Its error, if any, is reported first.
    std::thread::scope(|scope| {
        let tokenizer = scope.spawn(|| {
            let tokenizer = TextTokenizer::load(
                &package.file(TOKENIZER_FILE),
                m.model.vocab_size,
                m.special_tokens,
                &m.special_token_names,
            );
            crate::model::trace(&package.file(TOKENIZER_FILE), "read");
            tokenizer
        });
        let graphs = load_model_graphs(package, precision);
        let tokenizer = tokenizer
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic))?
            .with_prompt(m.prompt.clone());
        let (vision, embedding, decoder, heads) = graphs?;
        Ok((tokenizer, vision, embedding, decoder, heads))
    })
}

/// The vision, embedding and decoder graphs, and the matching heads if the package has them.
fn load_model_graphs(
    package: &Package,
    precision: Precision,
) -> Result<(
    VisionGraph,
    EmbeddingGraph,
    DecoderGraph,
    Option<HeadsGraph>,
)> {
    let m = &package.manifest;
    let vision = VisionGraph::load(
        &package.file(&precision.file(VISION_FILE)),
        &m.canvas,
        &m.image,
        m.model.d_model,
    )?;
    let embedding = EmbeddingGraph::load(&package.file(&precision.file(EMBEDDING_FILE)), &m.model)?;
    let decoder = DecoderGraph::load(&package.file(&precision.file(DECODER_FILE)), &m.model)?;
    let heads = match &m.matching {
        Some(h) => Some(HeadsGraph::load(
            &package.file(&h.file),
            m.model.d_model,
            h.dim,
        )?),
        None => None,
    };
    Ok((vision, embedding, decoder, heads))
}

impl Glimpse {
    /// Loads and verifies the package in `dir`, at the precision that suits this CPU best
    /// among those the package carries (see [`choose`]).
    pub fn load(dir: impl AsRef<Path>) -> Result<Glimpse> {
        Self::load_with(dir, None)
    }

    /// Loads the package at `precision`, or at the one chosen for this CPU when `None`.
    pub fn load_with(dir: impl AsRef<Path>, precision: Option<Precision>) -> Result<Glimpse> {
        let package = Package::open(dir)?;
        crate::model::trace(&package.dir, "opened");
        let m = &package.manifest;
        let available = &m.precisions;
        let wanted = precision.or_else(|| choose(available, CpuFeatures::detect()));
        let precision = match wanted {
            Some(p) if available.contains(&p) => p,
            _ => {
                return Err(Error::Manifest {
                    path: package.dir.join(crate::package::MANIFEST_FILE),
                    reason: format!(
                        "the package carries no {} graphs (it has: {})",
                        wanted.map(|p| p.name()).unwrap_or("usable"),
                        available
                            .iter()
                            .map(|p| p.name())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                });
            }
        };
        // The graphs and the tokenizer are checked before anything parses them; the
        // weights (external data, gigabytes on a large model) are hashed beside the load,
        // and a mismatch is the error reported, whatever the load made of the numbers.
        let (weights, others): (Vec<String>, Vec<String>) = package
            .files_for(precision)
            .into_iter()
            .partition(|name| crate::package::is_external_data(name));
        package.verify_files(&others)?;
        let (verified, graphs) = std::thread::scope(|scope| {
            let verifier = scope.spawn(|| package.verify_files(&weights));
            let graphs = load_graphs(&package, precision);
            let verified = verifier
                .join()
                .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
            (verified, graphs)
        });
        verified?;
        let (tokenizer, vision, embedding, decoder, heads) = graphs?;
        crate::model::trace(&package.dir, "loaded and verified");
        let m = &package.manifest;
        let max_new_tokens = m.max_new_tokens;
        Ok(Glimpse {
            package,
            tokenizer,
            vision,
            embedding,
            decoder,
            heads,
            max_new_tokens,
            precision,
        })
    }

    /// The matrix-product kernels tract runs the decoder with.
    pub fn decoder_kernels(&self) -> Vec<String> {
        self.decoder.matmul_kernels()
    }

    /// How the decoder's KV cache grows at each step.
    pub fn cache_growth(&self) -> crate::model::CacheGrowth {
        self.decoder.cache_growth()
    }

    pub fn canvas(&self) -> Canvas {
        self.package.manifest.canvas
    }

    /// How frames become patches for this package.
    pub fn image_format(&self) -> &ImageFormat {
        &self.package.manifest.image
    }

    /// Bounds the frames fed to the model to `max` (`None`: the manifest's default),
    /// for packages whose patch grid follows the image: a smaller image is a shorter
    /// prefill. Fails, naming the limit, for a size the package cannot take.
    pub fn set_max_image(&mut self, max: Option<Size>) -> Result<()> {
        let m = &mut self.package.manifest;
        if let Some(size) = max {
            m.image
                .check_max_image(&m.canvas, size)
                .map_err(Error::Usage)?;
            m.image.max_image = Some(size);
        }
        Ok(())
    }

    /// The area frames are fitted into (the canvas, or the maximum image size): what a
    /// camera should deliver at least.
    pub fn capture_box(&self) -> Canvas {
        let c = self.canvas();
        let b = self.image_format().fit_box(&c);
        Canvas {
            width: b.width,
            height: b.height,
            patch: c.patch,
        }
    }

    /// Image tokens (patches and row newlines) of a `width × height` frame.
    pub fn image_tokens(&self, width: u32, height: u32) -> usize {
        self.image_format()
            .image_tokens(&self.package.manifest.canvas, width, height)
    }

    pub fn max_positions(&self) -> usize {
        self.package.manifest.model.max_positions
    }

    pub fn patches(&self, frame: &RgbImage) -> Patches {
        self.image_format().patches(&self.canvas(), frame)
    }

    /// Preprocesses `frame` and runs the vision graph.
    pub fn see(&self, frame: &RgbImage) -> Result<ImageContext> {
        let t0 = Instant::now();
        let patches = self.patches(frame);
        let mut image = self.see_patches(&patches)?;
        image.preprocess_s = t0.elapsed().as_secs_f64() - image.vision_s;
        Ok(image)
    }

    /// Runs the vision graph on patches already cut from a frame.
    pub fn see_patches(&self, patches: &Patches) -> Result<ImageContext> {
        let t = Instant::now();
        let embeddings = self.vision.run(patches)?;
        Ok(ImageContext {
            embeddings,
            preprocess_s: 0.0,
            vision_s: t.elapsed().as_secs_f64(),
        })
    }

    /// Embeddings of token ids.
    pub fn embed(&self, ids: &[u32]) -> Result<Vec<f32>> {
        self.embedding.run(ids)
    }

    /// A decoder sequence with an empty cache.
    pub fn session(&self) -> Result<DecoderSession<'_>> {
        self.decoder.session()
    }

    pub fn caption(&self, frame: &RgbImage) -> Result<Answer> {
        self.run(frame, &Prompt::Caption, &mut |_| {})
    }

    pub fn ask(&self, frame: &RgbImage, question: &str) -> Result<Answer> {
        self.run(frame, &Prompt::Question(question.to_string()), &mut |_| {})
    }

    /// Generates the answer to `prompt` about `frame`, passing each piece of text to
    /// `on_text` as soon as it is decoded.
    pub fn run(
        &self,
        frame: &RgbImage,
        prompt: &Prompt,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        // Tokenize first: a prompt that cannot fit fails before any model runs.
        let stream = TokenStream::new(&self.tokenizer, prompt)?;
        check_room(
            self.image_tokens(frame.width(), frame.height()) + stream.text_ids.len(),
            self.max_positions(),
        )?;
        let image = self.see(frame)?;
        self.prefill_and_generate(&image, &stream, on_text)
    }

    /// Fails when image and prompt leave no room for an answer token.
    fn check_prompt(&self, image: &ImageContext, stream: &TokenStream) -> Result<()> {
        check_room(
            image.embeddings.len() / self.package.manifest.model.d_model + stream.text_ids.len(),
            self.max_positions(),
        )
    }

    /// Generation from an already-seen image: image and prompt are prefilled in one call.
    pub fn run_with_image(
        &self,
        image: &ImageContext,
        stream: &TokenStream,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        self.check_prompt(image, stream)?;
        self.prefill_and_generate(image, stream, on_text)
    }

    /// Image and prompt in one prefill call, then greedy decoding; the prompt is checked.
    fn prefill_and_generate(
        &self,
        image: &ImageContext,
        stream: &TokenStream,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        let mut prefix = image.embeddings.clone();
        prefix.extend(self.embedding.run(&stream.text_ids)?);
        let session = self.decoder.session()?;
        self.generate_from(session, image, &prefix, on_text)
    }

    /// A decoder sequence that already holds the image tokens of `image`. Clone it to ask
    /// several questions about one frame: each then prefills only its own text tokens.
    pub fn image_session(&self, image: &ImageContext) -> Result<DecoderSession<'_>> {
        let mut session = self.decoder.session()?;
        session.forward(&image.embeddings)?;
        Ok(session)
    }

    /// Generation that continues a session from [`Glimpse::image_session`].
    pub fn run_after_image(
        &self,
        session: DecoderSession<'_>,
        image: &ImageContext,
        stream: &TokenStream,
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        check_room(session.len() + stream.text_ids.len(), self.max_positions())?;
        let prefix = self.embedding.run(&stream.text_ids)?;
        self.generate_from(session, image, &prefix, on_text)
    }

    fn generate_from(
        &self,
        mut session: DecoderSession<'_>,
        image: &ImageContext,
        prefix: &[f32],
        on_text: &mut dyn FnMut(&str),
    ) -> Result<Answer> {
        let Generated {
            tokens,
            text,
            stop,
            prefill_s,
            decode_s,
        } = greedy(
            &mut session,
            &self.embedding,
            &self.tokenizer,
            prefix,
            self.max_positions(),
            self.max_new_tokens,
            on_text,
        )?;
        Ok(Answer {
            text,
            tokens,
            stop,
            timings: Timings {
                preprocess_s: image.preprocess_s,
                vision_s: image.vision_s,
                prefill_s,
                decode_s,
            },
        })
    }
}
