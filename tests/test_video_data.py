"""Tests for vjepa_fast.data.video and vjepa_fast.data.augment on real files written with PyAV."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

av = pytest.importorskip("av")

from vjepa_fast.data.augment import (  # noqa: E402
    IMAGENET_MEAN,
    IMAGENET_STD,
    AugmentConfig,
    ClipAugment,
    sample_resized_crop,
)
from vjepa_fast.data.decode import (  # noqa: E402
    SKIP_REASONS,
    ClipSkipped,
    count_frames,
    decode_clip,
    decode_frames,
    frame_step,
    read_image_clip,
)
from vjepa_fast.data.sources import expand_source, load_manifest  # noqa: E402
from vjepa_fast.data.video import VideoClipDataset, WeightedMixtureSampler, count_skips  # noqa: E402

SQ = 8  # side of the moving square, px


def _square_pos(i: int) -> tuple[int, int]:
    """Top-left (y, x) of the square in frame i: 8 px steps along x, a new 4 px row every 8 frames."""
    return (i // 8) * 4, (i % 8) * 8


def _frame(i: int, height: int, width: int) -> np.ndarray:
    img = np.full((height, width, 3), 16, np.uint8)
    y, x = _square_pos(i)
    img[y : y + SQ, x : x + SQ] = 240
    return img


def _write_video(path: Path, num_frames: int, fps: int = 30, height: int = 48, width: int = 64) -> Path:
    with av.open(str(path), "w") as c:
        s = c.add_stream("mpeg4", rate=fps)
        s.width, s.height, s.pix_fmt = width, height, "yuv420p"
        s.bit_rate = 4_000_000  # high quality so the square survives the codec
        s.codec_context.gop_size = 6  # several keyframes, so seeking is exercised
        if num_frames == 0:
            c.start_encoding()  # otherwise PyAV writes no file at all; this gives a header and no frame
        for i in range(num_frames):
            for pkt in s.encode(av.VideoFrame.from_ndarray(_frame(i, height, width), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    return path


def _frame_index(img: torch.Tensor) -> int:
    """Recover i from a decoded frame [H, W, 3] via the square's centroid."""
    mask = img.float().mean(-1) > 128
    ys, xs = torch.nonzero(mask, as_tuple=True)
    y, x = ys.float().mean().item() - (SQ - 1) / 2, xs.float().mean().item() - (SQ - 1) / 2
    return int(round(y / 4)) * 8 + int(round(x / 8))


@pytest.fixture(scope="module")
def media(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("media")
    good = d / "good"
    good.mkdir()
    files = {
        "a": _write_video(good / "a.mp4", 30),
        "long": _write_video(good / "long.mp4", 120, height=80),
        "short": _write_video(d / "short.mp4", 6),
        "tiny": _write_video(d / "tiny.mp4", 2),
        "zero": _write_video(d / "zero.mp4", 0),
    }
    files["corrupt"] = d / "corrupt.mp4"
    files["corrupt"].write_bytes(np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes())
    files["empty"] = d / "empty.webm"
    files["empty"].write_bytes(b"")
    from PIL import Image

    files["image"] = good / "img.png"
    Image.fromarray(_frame(5, 48, 64)).save(files["image"])
    files["dir"] = d
    files["good"] = good
    return files


def test_frame_step() -> None:
    assert frame_step(30, 4) == 8  # 7.5 rounds up
    assert frame_step(25, 4) == 6
    assert frame_step(29.97, 10) == 3
    assert frame_step(30, None) == 1
    assert frame_step(2, 4) == 1


def test_decode_content_and_fps_step(media: dict[str, Path]) -> None:
    for seed in range(4):
        frames, idx = decode_clip(str(media["a"]), 4, 10, torch.Generator().manual_seed(seed))
        assert frames.shape == (4, 48, 64, 3) and frames.dtype == torch.uint8
        assert [b - a for a, b in zip(idx, idx[1:])] == [3, 3, 3]  # 30 fps -> 10 fps: step 3
        assert 0 <= idx[0] <= 30 - 10
        assert [_frame_index(f) for f in frames] == idx


def test_decode_seeks_in_long_video(media: dict[str, Path]) -> None:
    starts = set()
    for seed in range(6):
        frames, idx = decode_clip(str(media["long"]), 5, 7.5, torch.Generator().manual_seed(seed))
        assert [b - a for a, b in zip(idx, idx[1:])] == [4] * 4
        assert [_frame_index(f) for f in frames] == idx
        starts.add(idx[0])
    assert len(starts) > 1 and max(starts) > 12  # random starts beyond the first keyframes
    frames, idx = decode_clip(str(media["long"]), 5, 7.5, train=False)
    assert idx[0] == (120 - 17) // 2 and [_frame_index(f) for f in frames] == idx


@pytest.mark.parametrize("codec, ext", [("libvpx-vp9", "webm"), ("mjpeg", "avi")])
def test_decode_other_containers(codec: str, ext: str, tmp_path: Path) -> None:
    """webm has no frame count in its header (length from the duration); avi/mjpeg has only keyframes."""
    if codec not in av.codecs_available:
        pytest.skip(f"FFmpeg build without {codec}")
    path = tmp_path / f"v.{ext}"
    with av.open(str(path), "w") as c:
        s = c.add_stream(codec, rate=25)
        s.width, s.height, s.pix_fmt = 64, 80, "yuvj420p" if codec == "mjpeg" else "yuv420p"
        for i in range(100):
            for pkt in s.encode(av.VideoFrame.from_ndarray(_frame(i, 80, 64), format="rgb24")):
                c.mux(pkt)
        for pkt in s.encode():
            c.mux(pkt)
    for seed in range(3):
        frames, idx = decode_clip(str(path), 6, 5, torch.Generator().manual_seed(seed))
        assert [b - a for a, b in zip(idx, idx[1:])] == [5] * 5  # 25 fps -> 5 fps
        assert [_frame_index(f) for f in frames] == idx


def test_short_video_padding_and_skips(media: dict[str, Path]) -> None:
    # 6 frames, step 3: frames 0 and 3 are real (2 >= 0.5 * 4), then the last is repeated
    frames, idx = decode_clip(str(media["short"]), 4, 10)
    assert idx == [0, 3, 3, 3] and [_frame_index(f) for f in frames] == idx
    with pytest.raises(ClipSkipped) as e:
        decode_clip(str(media["short"]), 4, 10, min_fraction=1.0)
    assert e.value.reason == "too_short"
    cases = {"tiny": "too_short", "corrupt": "unreadable", "empty": "empty"}
    for name, reason in cases.items():
        with pytest.raises(ClipSkipped) as e:
            decode_clip(str(media[name]), 4, 10)
        assert e.value.reason == reason, name
    with pytest.raises(ClipSkipped) as e:
        decode_clip(str(media["zero"]), 4, 10)
    assert e.value.reason == "no_frames"
    with pytest.raises(ClipSkipped) as e:
        decode_clip(str(media["dir"] / "nope.mp4"), 4, 10)
    assert e.value.reason == "missing"


def test_decode_frames_by_index_is_the_one_decoder(media: dict[str, Path]) -> None:
    """decode_frames (index = decoding order, what episodes and DROID read) gives the frames decode_clip picks
    by timestamp after its seek; the episode readers are this decoder with their own skip reasons."""
    from vjepa_fast.data.robot_episode import EpisodeSkipped, read_video_frames, video_num_frames

    long = media["long"]
    assert count_frames(long) == video_num_frames(long) == 120
    frames, idx = decode_clip(str(long), 5, 7.5, torch.Generator().manual_seed(2))
    assert idx[0] > 0 and torch.equal(decode_frames(long, idx), frames)
    picked = decode_frames(long, [7, 2, 7, 119])  # any order, repeats
    assert [_frame_index(f) for f in picked] == [7, 2, 7, 119]
    assert torch.equal(read_video_frames(long, [7, 2, 7, 119]), picked)
    assert decode_frames(media["short"]).shape == (6, 48, 64, 3) and decode_frames(long, []).shape == (0, 0, 0, 3)
    for name, args, reason in [("short", [6], "too_short"), ("short", [-1], "too_short"),
                               ("corrupt", [0], "unreadable"), ("empty", [0], "empty"), ("zero", None, "no_frames")]:
        with pytest.raises(ClipSkipped) as e:
            decode_frames(media[name], args)
        assert e.value.reason == reason, name
    with pytest.raises(EpisodeSkipped) as ep:
        read_video_frames(media["zero"])
    assert ep.value.reason == "unreadable"
    with pytest.raises(EpisodeSkipped) as ep:  # FFmpeg's own error types used to escape video_num_frames
        video_num_frames(media["corrupt"])
    assert ep.value.reason == "unreadable"


def test_image_clip(media: dict[str, Path]) -> None:
    clip = read_image_clip(str(media["image"]), 4)
    assert clip.shape == (4, 48, 64, 3) and _frame_index(clip[3]) == 5
    ds = VideoClipDataset([media["image"]], num_frames=4, crop_size=32, seed=1)
    v = ds[0]["video"]
    assert v.shape == (3, 4, 32, 32)
    assert torch.equal(v[:, 0], v[:, 3])  # same crop and flip on every frame


def test_augment_shapes_normalisation_and_consistent_flip() -> None:
    gray = torch.full((3, 20, 30, 3), 100, dtype=torch.uint8)
    out = ClipAugment(AugmentConfig(crop_size=16))(gray, torch.Generator().manual_seed(0))
    assert out.shape == (3, 3, 16, 16) and out.dtype == torch.float32
    expect = (100 / 255 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    torch.testing.assert_close(out.mean(dim=(1, 2, 3)), expect, atol=1e-5, rtol=0)

    # horizontal ramp, brighter each frame: the sign of the slope tells whether a frame was flipped
    ramp = torch.arange(60, dtype=torch.float32).view(1, 1, 60, 1) * 3
    frames = (ramp + torch.arange(4).view(4, 1, 1, 1) * 5).expand(4, 40, 60, 3).to(torch.uint8)
    aug = ClipAugment(AugmentConfig(crop_size=16))
    flips = []
    for seed in range(40):
        out = aug(frames, torch.Generator().manual_seed(seed))
        slope = out[0, :, :, -1].mean(-1) - out[0, :, :, 0].mean(-1)  # [F]
        assert bool((slope > 0).all()) or bool((slope < 0).all()), seed
        flips.append(bool(slope[0] < 0))
        # same crop box on every frame: frame f differs from frame 0 only by the added constant
        step = torch.full((16, 16), 15 / 255 / IMAGENET_STD[0])
        torch.testing.assert_close(out[0, 3] - out[0, 0], step, atol=1e-3, rtol=0)
    assert 8 < sum(flips) < 32


def test_resized_crop_params() -> None:
    g = torch.Generator().manual_seed(0)
    for _ in range(200):
        top, left, h, w = sample_resized_crop(100, 200, (0.3, 1.0), (0.75, 1.35), g)
        assert 0 <= top and top + h <= 100 and 0 <= left and left + w <= 200
        assert 0.3 * 0.9 <= h * w / 20000 <= 1.0 and 0.7 <= w / h <= 1.45
    with pytest.raises(ValueError, match="scale"):
        AugmentConfig(scale=(0.5, 0.2))
    with pytest.raises(ValueError, match="ratio"):
        AugmentConfig(ratio=(0.0, 1.0))


def test_manifest_json_csv_and_listfile(media: dict[str, Path], tmp_path: Path) -> None:
    lst = tmp_path / "list.txt"
    lst.write_text(f"{media['a']}\n# comment\n\n{media['short']} 7\n")
    sources = [{"path": str(media["good"]), "weight": 3}, [lst.name, 1]]
    (tmp_path / "m.json").write_text(json.dumps({"sources": sources}))
    (tmp_path / "m.csv").write_text(f"path,weight\n{media['good']},0.75\nlist.txt,0.25\n")
    for name, weights in (("m.json", [3.0, 1.0]), ("m.csv", [0.75, 0.25])):
        specs = load_manifest(tmp_path / name)
        assert [s.weight for s in specs] == weights
        assert Path(specs[1].path) == lst
    assert expand_source(lst) == [str(media["a"]), str(media["short"])]
    assert [Path(f).name for f in expand_source(media["good"])] == ["a.mp4", "img.png", "long.mp4"]
    with pytest.raises(ValueError, match="weight"):
        (tmp_path / "bad.csv").write_text(f"{media['a']},-1\n")
        load_manifest(tmp_path / "bad.csv")
    ds = VideoClipDataset(tmp_path / "m.csv", num_frames=4, fps=10, crop_size=16)
    assert ds.source_sizes == [3, 2] and ds.weights == [0.75, 0.25]


def test_mixture_weights_and_rank_split() -> None:
    sampler = WeightedMixtureSampler([3, 5], [0.75, 0.25], num_samples=2000, seed=3)
    keys = list(sampler)
    assert len(keys) == 2000
    frac = sum(1 for k in keys if k[0] < 3) / len(keys)
    assert abs(frac - 0.75) < 0.035, frac
    # inside a source every file is used before any repeats
    first = [k[0] for k in keys if k[0] < 3][:3]
    assert sorted(first) == [0, 1, 2]
    assert sampler.epoch == 1 and sampler.index == 0
    assert [k[2] for k in keys] == list(range(2000))
    # ranks split the same global stream
    ranks = [list(WeightedMixtureSampler([3, 5], [0.75, 0.25], 2001, seed=3, rank=r, world_size=3)) for r in range(3)]
    assert all(len(r) == 667 for r in ranks)
    merged = sorted((k for r in ranks for k in r), key=lambda k: k[2])
    assert [k[2] for k in merged] == list(range(2001))
    with pytest.raises(ValueError, match="rank"):
        WeightedMixtureSampler([3], [1.0], 10, rank=2, world_size=2)
    with pytest.raises(ValueError, match="weights"):
        WeightedMixtureSampler([3, 4], [1.0, 0.0], 10)


def test_sampler_resume() -> None:
    ref = WeightedMixtureSampler([4, 6], [0.5, 0.5], num_samples=20, seed=1, rank=1, world_size=2)
    stream = [k for _ in range(3) for k in ref]  # 3 epochs of 10 keys
    s = WeightedMixtureSampler([4, 6], [0.5, 0.5], num_samples=20, seed=1, rank=1, world_size=2)
    it = iter(s)
    head = [next(it) for _ in range(3)]
    state = s.state_dict()
    resumed = WeightedMixtureSampler([4, 6], [0.5, 0.5], num_samples=20, seed=1, rank=1, world_size=2)
    resumed.load_state_dict(state)
    tail = list(resumed) + list(resumed)
    assert head + tail == stream[:20]
    # exact resume from a batch's keys (what a training loop saves)
    batch = {"epoch": torch.tensor([k[1] for k in stream[10:14]]), "draw": torch.tensor([k[2] for k in stream[10:14]])}
    st = ref.state_from_batch(batch)
    assert (st["epoch"], st["index"]) == (1, 4)
    again = WeightedMixtureSampler([4, 6], [0.5, 0.5], num_samples=20, seed=1, rank=1, world_size=2)
    again.load_state_dict(st)
    assert list(again) == stream[14:20]
    end = ref.state_from_batch({"epoch": torch.tensor([0]), "draw": torch.tensor([19])})
    assert (end["epoch"], end["index"]) == (1, 0)
    with pytest.raises(ValueError, match="seed"):
        again.load_state_dict({**st, "seed": 2})


def test_bad_files_skipped_and_counted(media: dict[str, Path], caplog: pytest.LogCaptureFixture) -> None:
    bad = [media[n] for n in ("corrupt", "empty", "tiny", "zero")] + [media["dir"] / "missing.mp4"]
    # one good file among six single-file sources: replacements come from any source, so allow many retries
    ds = VideoClipDataset(
        [(p, 1.0) for p in [media["a"], *bad]], num_frames=4, fps=10, crop_size=16, max_retries=60, seed=0
    )
    with caplog.at_level(logging.WARNING, logger="vjepa_fast.data.video"):
        samples = [ds[(i, 0, i)] for i in range(len(ds))] + [ds[(i, 1, 10 + i)] for i in range(len(ds))]
    assert all(s["video"].shape == (3, 4, 16, 16) and s["index"] == 0 for s in samples)
    total = sum(sum(s["skipped"].values()) for s in samples)
    assert total == sum(ds.skipped.values()) >= 10
    assert ds.skipped["unreadable"] >= 2 and ds.skipped["empty"] >= 2 and ds.skipped["too_short"] >= 2
    assert ds.skipped["missing"] >= 2
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 5 and all(any(p.name in w for w in warned) for p in bad)  # once per file


def test_dataloader_workers_match_single_process(media: dict[str, Path]) -> None:
    files = [(media["good"], 0.75), (media["dir"], 0.25)]  # the second source also holds the bad files
    ds = VideoClipDataset(files, num_frames=4, fps=10, crop_size=16, seed=5)

    def run(num_workers: int) -> list[dict]:
        sampler = WeightedMixtureSampler.for_dataset(ds, num_samples=24, seed=2)
        loader = DataLoader(
            ds,
            batch_size=4,
            sampler=sampler,
            num_workers=num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=False,
        )
        return list(loader)

    single, multi = run(0), run(2)
    assert len(single) == len(multi) == 6
    for a, b in zip(single, multi):
        assert a["video"].shape == (4, 3, 4, 16, 16)
        assert torch.equal(a["video"], b["video"]) and torch.equal(a["index"], b["index"])
        assert set(a["skipped"]) == set(SKIP_REASONS)
    n_multi = sum(sum(count_skips(b).values()) for b in multi)
    assert n_multi == sum(sum(count_skips(b).values()) for b in single) > 0


# ------------------------------------------------------------------ robot episodes as pretraining video


def _write_episode(path: Path, n: int, fps: float = 4.0, *, mp4: bool = False) -> None:
    from vjepa_fast.data.episode_format import EpisodeWriter

    w = EpisodeWriter(path, fps=fps, camera="sim:front_right")
    for i in range(n):
        frame = np.zeros((32, 32, 3), dtype=np.uint8)
        frame[:, :, 0] = 10 * i  # frame i is recognisable by its red value
        w.append(frame, [0.5, 0.0, 0.3, np.pi, 0.0, 0.0, 0.0], [0.0] * 7 if i < n - 1 else None)
    w.close(encode_mp4=mp4)


def test_episode_folders_are_video_sources(tmp_path):
    root = tmp_path / "gen"
    _write_episode(root / "ep_000000", 13)
    _write_episode(root / "ep_000001", 5)
    _write_episode(root / "nested" / "ep_000002", 3)
    write_video = pytest.importorskip("vjepa_fast.data.synthetic").write_video
    write_video(root / "clip.mp4", np.zeros((8, 32, 32, 3), dtype=np.uint8), fps=8)
    files = expand_source(root)
    # three episodes (their PNG frames are not listed on their own) and the loose video
    assert sorted(Path(f).name for f in files) == ["clip.mp4", "ep_000000", "ep_000001", "ep_000002"]
    assert expand_source(root / "ep_000001") == [str(root / "ep_000001")]

    from vjepa_fast.data.video import read_episode_clip

    g = torch.Generator().manual_seed(0)
    # 4 fps episode at 4 fps: consecutive frames, a uniform start; eval: the centred clip
    clip = read_episode_clip(str(root / "ep_000000"), 4, 4.0, g)
    red = (clip[:, 0, 0, 0] // 10).tolist()
    assert clip.shape == (4, 32, 32, 3) and red == list(range(red[0], red[0] + 4))
    assert (read_episode_clip(str(root / "ep_000000"), 4, 4.0, train=False)[:, 0, 0, 0] // 10).tolist() == [4, 5, 6, 7]
    # 2 fps from a 4 fps episode: every second frame
    assert (read_episode_clip(str(root / "ep_000000"), 3, 2.0, train=False)[:, 0, 0, 0] // 10).tolist() == [4, 6, 8]
    # short episode: padded with its last frame; too short: skipped
    assert (read_episode_clip(str(root / "nested" / "ep_000002"), 4, 4.0)[:, 0, 0, 0] // 10).tolist() == [0, 1, 2, 2]
    with pytest.raises(ClipSkipped) as e:
        read_episode_clip(str(root / "nested" / "ep_000002"), 8, 4.0)
    assert e.value.reason == "too_short"
    (root / "ep_000001" / "meta.json").write_text("{ torn")
    with pytest.raises(ClipSkipped) as e:
        read_episode_clip(str(root / "ep_000001"), 4, 4.0)
    assert e.value.reason == "unreadable"

    ds = VideoClipDataset([str(root)], num_frames=4, fps=4.0, crop_size=32, seed=3)
    assert len(ds) == 4
    sample = ds[(files.index(str(root / "ep_000000")), 0, 0)]
    assert sample["video"].shape == (3, 4, 32, 32) and sample["index"] == files.index(str(root / "ep_000000"))
    bad = ds[(files.index(str(root / "ep_000001")), 0, 1)]  # the torn episode is replaced and counted
    assert bad["index"] != files.index(str(root / "ep_000001")) and bad["skipped"]["unreadable"] == 1


def test_episode_with_mp4_frames_is_a_video_source(tmp_path):
    from vjepa_fast.data.video import read_episode_clip

    _write_episode(tmp_path / "ep", 6, mp4=True)
    assert not (tmp_path / "ep" / "frames").exists() or not any((tmp_path / "ep" / "frames").iterdir())
    clip = read_episode_clip(str(tmp_path / "ep"), 4, 4.0, train=False)
    # lossy MPEG-4: the red ramp survives to within a few levels
    assert clip.shape == (4, 32, 32, 3)
    np.testing.assert_allclose(clip[:, 16, 16, 0].float().numpy(), [10.0, 20.0, 30.0, 40.0], atol=6)
