"""The `image_folder` TFDS builder: any local folder of images, decoded with PIL (no download)."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import hashlib
import os
import re

import numpy as np
import tensorflow_datasets as tfds

from diffax.data._local import LocalBuilder

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm")


def resize_image(image: np.ndarray, size: tuple[int, int], *, center_crop: bool = True):
    """Resizes a uint8 image `[H, W, C]` to `size = (height, width)` with PIL's bicubic filter.

    With `center_crop`, the largest central window with the target aspect ratio is cropped
    first, so nothing is stretched; without it the whole image is resized.

    Example:
      >>> resize_image(np.zeros((10, 20, 3), np.uint8), (4, 4)).shape
      (4, 4, 3)
    """
    from PIL import Image

    height, width = size
    if image.shape[:2] == (height, width):
        return image
    channels = image.shape[-1]
    pil = Image.fromarray(image[..., 0] if channels == 1 else image)
    if center_crop:
        pil = _center_crop(pil, height / width)
    pil = pil.resize((width, height), resample=Image.Resampling.BICUBIC)
    return np.asarray(pil, dtype=np.uint8).reshape(height, width, channels)


def _center_crop(pil, aspect: float):
    w, h = pil.size
    if h / w > aspect:  # Too tall: crop rows.
        new_h = max(1, round(w * aspect))
        top = (h - new_h) // 2
        return pil.crop((0, top, w, top + new_h))
    new_w = max(1, round(h / aspect))
    left = (w - new_w) // 2
    return pil.crop((left, 0, left + new_w, h))


def scan_image_folder(folder, *, labels: bool | None = None):
    """Lists the images under `folder` and their classes.

    Images are the files whose extension is in `IMAGE_EXTENSIONS` (case-insensitive), found
    recursively; hidden files and folders are skipped. With `labels=None` (auto), the folder is
    labelled when every image lies inside a subfolder: the class of an image is the name of its
    top-level subfolder, and class indices follow the sorted class names. `labels=False`
    ignores subfolders; `labels=True` requires them.

    Returns:
      `(files, class_names)`: sorted relative paths (with "/" separators) and the sorted class
      names (None when unlabelled).

    Raises:
      FileNotFoundError: `folder` does not exist or is not a directory.
      ValueError: `folder` holds no image, or mixes labelled and top-level images.

    Example:
      >>> import tempfile
      >>> from PIL import Image
      >>> root = tempfile.mkdtemp()
      >>> os.makedirs(f"{root}/cat")
      >>> Image.new("RGB", (4, 4)).save(f"{root}/cat/a.png")
      >>> scan_image_folder(root)
      (['cat/a.png'], ['cat'])
    """
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(
            f"Image folder {folder!r} (argument `folder`) does not exist or is not a directory."
        )
    files = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for f in filenames:
            if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS):
                rel = os.path.relpath(os.path.join(dirpath, f), folder)
                files.append(rel.replace(os.sep, "/"))
    files.sort()
    if not files:
        raise ValueError(
            f"Image folder {folder!r} (argument `folder`) holds no image file "
            f"(extensions {', '.join(IMAGE_EXTENSIONS)})."
        )
    in_subfolder = ["/" in f for f in files]
    if labels is None:
        if all(in_subfolder):
            labels = True
        elif not any(in_subfolder):
            labels = False
        else:
            raise ValueError(
                f"Image folder {folder!r} (argument `folder`) mixes images at its top level with "
                "images in subfolders: put every image in a class subfolder, or pass "
                "labels=False to ignore the subfolders."
            )
    if not labels:
        return files, None
    if not all(in_subfolder):
        raise ValueError(
            f"labels=True but some images of {folder!r} (argument `folder`) are not in a class "
            "subfolder."
        )
    return files, sorted({f.split("/", 1)[0] for f in files})


def _fingerprint(folder: str, files: list[str], options: tuple) -> str:
    h = hashlib.sha256(repr(options).encode())
    for f in files:
        st = os.stat(os.path.join(folder, f))
        h.update(f"{f}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:12]


class ImageDecodeError(ValueError):
    """An image of the folder could not be read: names the file and the folder."""


# What PIL raises on a file it cannot read: UnidentifiedImageError (an OSError) for an empty or
# unknown file, OSError for a truncated one, SyntaxError for a broken PNG chunk, and
# ValueError/EOFError from some plugins.
_DECODE_ERRORS = (OSError, SyntaxError, ValueError, EOFError)


def _decode_error(folder: str, file: str, error: BaseException) -> ImageDecodeError:
    return ImageDecodeError(
        f"Image folder {folder!r} (argument `folder`): cannot read image file {file!r}: "
        f"{type(error).__name__}: {error}. Remove or replace the file."
    )


def _load_image(folder: str, file: str, channels: int, size: tuple[int, int] | None,
                center_crop: bool):
    """Decodes ``folder/file`` fully (a truncated file fails here, not later inside TFDS)."""
    from PIL import Image

    try:
        with Image.open(os.path.join(folder, file)) as pil:
            pil.load()
            pil = pil.convert("L" if channels == 1 else "RGB")
            image = np.asarray(pil, dtype=np.uint8).reshape(pil.size[1], pil.size[0], channels)
    except _DECODE_ERRORS as e:
        raise _decode_error(folder, file, e) from e
    return image if size is None else resize_image(image, size, center_crop=center_crop)


@dataclasses.dataclass
class ImageFolderConfig(tfds.core.BuilderConfig):
    """Config of `ImageFolder`; build it with `ImageFolderConfig.create`."""

    folder: str = ""
    image_size: tuple[int, int] = (0, 0)
    channels: int = 3
    center_crop: bool = True
    files: tuple[str, ...] = ()
    class_names: tuple[str, ...] | None = None

    @classmethod
    def create(
        cls,
        folder,
        *,
        image_size: int | tuple[int, int] | None = None,
        channels: int = 3,
        center_crop: bool = True,
        labels: bool | None = None,
    ) -> ImageFolderConfig:
        """Scans `folder` and returns the config; its name fingerprints the folder's content.

        Args:
          folder: path of the image folder.
          image_size: `size` or `(height, width)` the images are resized to; None keeps the
            images' own size, which must then be the same for all.
          channels: 3 (RGB) or 1 (grayscale); images are converted with PIL.
          center_crop: crop the central window with the target aspect ratio before resizing.
          labels: see `scan_image_folder`.

        The config name combines the folder's name, the size, the options and a hash of the
        file list, sizes and modification times: changing the folder gives a new config, so a
        stale preparation is never read.
        """
        folder = os.path.abspath(os.fspath(folder))
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 or 3, got {channels!r}.")
        files, class_names = scan_image_folder(folder, labels=labels)
        size = _check_image_size(image_size)
        if size is None:
            size = _common_size(folder, files)
        options = (size, channels, bool(center_crop), class_names)
        slug = re.sub(r"[^a-z0-9]+", "_", os.path.basename(folder).lower()).strip("_") or "root"
        if not slug[0].isalpha():
            slug = "d_" + slug
        name = f"{slug}_{size[0]}x{size[1]}x{channels}_{_fingerprint(folder, files, options)}"
        return cls(
            name=name,
            description=f"Images of {folder}, resized to {size[0]}x{size[1]}x{channels}.",
            folder=folder,
            image_size=size,
            channels=channels,
            center_crop=bool(center_crop),
            files=tuple(files),
            class_names=None if class_names is None else tuple(class_names),
        )


def _check_image_size(image_size) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if np.ndim(image_size) == 0 else tuple(image_size)
    if len(size) != 2 or not all(int(s) == s and s > 0 for s in size):
        raise ValueError(
            f"image_size must be a positive int or a (height, width) pair, got {image_size!r}."
        )
    return int(size[0]), int(size[1])


def _common_size(folder: str, files: list[str]) -> tuple[int, int]:
    from PIL import Image

    sizes = set()
    for f in files:
        try:
            with Image.open(os.path.join(folder, f)) as pil:
                sizes.add((pil.size[1], pil.size[0]))
        except _DECODE_ERRORS as e:
            raise _decode_error(folder, f, e) from e
        if len(sizes) > 1:
            raise ValueError(
                f"Images of {folder!r} have different sizes {sorted(sizes)}: pass image_size."
            )
    return sizes.pop()


class ImageFolder(LocalBuilder, skip_registration=True):
    """TFDS builder `image_folder`: a local folder of images, one split `train`.

    Build it with `ImageFolder(config=ImageFolderConfig.create(folder, image_size=...),
    data_dir=..., file_format="array_record")`. Features: `image` uint8 `[H, W, C]` (decoded
    with PIL, converted to RGB or L, center-cropped and resized at preparation, stored as PNG),
    `label` (ClassLabel, only for labelled folders), `filename` (path relative to the folder).
    """

    name = "image_folder"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}

    def _info(self) -> tfds.core.DatasetInfo:
        config = self.builder_config
        features = {
            "image": tfds.features.Image(shape=(*config.image_size, config.channels)),
            "filename": tfds.features.Text(),
        }
        if config.class_names is not None:
            features["label"] = tfds.features.ClassLabel(names=list(config.class_names))
        return tfds.core.DatasetInfo(
            builder=self,
            description=config.description,
            features=tfds.features.FeaturesDict(features),
        )

    def _split_generators(self, dl_manager):
        del dl_manager  # Nothing to download.
        return {"train": self._generate_examples()}

    def _generate_examples(self):
        from PIL import Image

        config = self.builder_config
        files = list(config.files)
        load = lambda f: _load_image(  # noqa: E731
            config.folder, f, config.channels, config.image_size, config.center_crop,
        )
        # PIL releases the GIL while decoding and resizing: a few threads, in chunks.
        with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:
            for start in range(0, len(files), 256):
                chunk = files[start:start + 256]
                for f, image in zip(chunk, pool.map(load, chunk), strict=True):
                    example = {
                        "image": Image.fromarray(image[..., 0] if config.channels == 1 else image),
                        "filename": f,
                    }
                    if config.class_names is not None:
                        example["label"] = f.split("/", 1)[0]
                    yield f, example
