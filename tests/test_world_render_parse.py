"""Renderer and parser of the Shapes world: exact round trips, robustness, bad inputs."""

from __future__ import annotations

import numpy as np
import pytest

from qwenrl.world.grammar import EDIT_FAMILIES, T2I_FAMILIES, sample_edit, sample_t2i_prompt, scene_for_prompt
from qwenrl.world.parse import (
    MIN_OBJECT_AREA,
    is_exact_parse,
    noisy_render,
    object_centroid,
    parse,
    parse_errors,
)
from qwenrl.world.scene import IMAGE_SIZE, OBJECT_COLORS, PALETTE, SHAPES, SIZES, Obj, Scene, render, render_indices


def family_scenes(seed: int, per_family: int) -> list[tuple[str, Scene]]:
    rng = np.random.default_rng(seed)
    out = []
    for f in T2I_FAMILIES:
        out += [(f"t2i/{f}", scene_for_prompt(sample_t2i_prompt(rng, f), rng)) for _ in range(per_family)]
    for f in EDIT_FAMILIES:
        for _ in range(per_family // 2):
            task = sample_edit(rng, family=f)
            out += [(f"edit/{f}", task.source), (f"edit/{f}", task.target)]
    return out


def test_render_is_a_palette_image():
    scene = Scene("gray", (Obj("circle", "red", "large", 2, 3), Obj("triangle", "cyan", "small", 20, 20)))
    img = render(scene)
    assert img.shape == (IMAGE_SIZE, IMAGE_SIZE, 3) and img.dtype == np.uint8
    colours = {tuple(c) for c in img.reshape(-1, 3)}
    assert colours <= {tuple(c) for c in PALETTE}
    assert np.array_equal(PALETTE[render_indices(scene)], img)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", tuple(SIZES))
def test_every_shape_and_size_round_trips(shape, size):
    for color in OBJECT_COLORS:
        scene = Scene("white", (Obj(shape, color, size, 5, 7),))
        parsed = parse(render(scene))
        assert len(parsed.objects) == 1
        o = parsed.objects[0]
        assert (o.shape, o.color, o.size) == (shape, color, size)
        assert o.shape_confidence == pytest.approx(1.0)
        assert o.purity == 1.0 and o.color_distance == 0.0
        assert o.to_obj() == scene.objects[0]


def test_round_trip_over_every_grammar_family():
    scenes = family_scenes(seed=11, per_family=40)
    assert {name for name, _ in scenes} == {f"t2i/{f}" for f in T2I_FAMILIES} | {f"edit/{f}" for f in EDIT_FAMILIES}
    failures = []
    for name, scene in scenes:
        parsed = parse(render(scene))
        errors = parse_errors(parsed, scene)
        if errors:
            failures.append((name, scene, errors))
            continue
        # The parse describes the scene well enough to redraw it pixel for pixel.
        assert np.array_equal(render(parsed.to_scene()), render(scene)), name
        assert parsed.speck_count == 0 and parsed.unknown_fraction == 0.0
    assert not failures, failures[:3]


def test_noisy_renders_mostly_parse_exactly():
    scenes = family_scenes(seed=12, per_family=16)
    rng = np.random.default_rng(0)
    exact = [is_exact_parse(parse(noisy_render(s, rng)), s) for _, s in scenes]
    # The benchmark measures ~92% on 4,800 scenes; this is a floor, not the measurement.
    assert np.mean(exact) >= 0.85


def test_background_is_the_dominant_border_colour_even_with_an_object_on_the_border():
    scene = Scene("black", (Obj("square", "yellow", "large", 0, 0),))
    assert parse(render(scene)).background == "black"


def test_specks_are_counted_and_dropped():
    scene = Scene("white", (Obj("square", "blue", "large", 4, 4),))
    img = render(scene)
    img[25:27, 25:27] = OBJECT_COLORS["red"]  # 2x2 speck
    img[2, 28] = OBJECT_COLORS["green"]  # single pixel (cleaned away by its neighbours)
    parsed = parse(img)
    assert [o.color for o in parsed.objects] == ["blue"]
    assert parsed.speck_count == 1 and parsed.speck_area == 4
    assert is_exact_parse(parsed, scene)


def test_a_small_object_is_not_a_speck():
    scene = Scene("white", (Obj("triangle", "green", "small", 10, 10),))
    o = parse(render(scene)).objects[0]
    assert o.area >= MIN_OBJECT_AREA and o.shape == "triangle"


def test_off_colours_and_noise_still_parse():
    scene = Scene("gray", (Obj("circle", "purple", "large", 3, 3), Obj("square", "yellow", "small", 20, 18)))
    img = render(scene).astype(np.int16) + np.array([25, -20, 15], dtype=np.int16)
    parsed = parse(np.clip(img, 0, 255).astype(np.uint8))
    assert is_exact_parse(parsed, scene)
    assert 20 < parsed.objects[0].color_distance < 40


def test_blended_colours_are_unknown_not_objects():
    img = render(Scene("white", ()))
    img[8:20, 8:20] = (135, 192, 35)  # halfway between yellow and green
    parsed = parse(img)
    assert parsed.objects == ()
    assert parsed.unknown_fraction == pytest.approx(144 / IMAGE_SIZE**2)


def test_fragments_touching_diagonally_are_one_object():
    img = render(Scene("white", ()))
    img[5:10, 5:10] = OBJECT_COLORS["red"]
    img[10:15, 10:15] = OBJECT_COLORS["red"]
    parsed = parse(img)
    assert len(parsed.objects) == 1 and parsed.objects[0].area == 50


def test_one_pixel_crack_is_mended():
    scene = Scene("white", (Obj("square", "cyan", "large", 8, 8),))
    img = render(scene)
    img[8:22, 15] = (245, 245, 245)  # a vertical crack through the square
    parsed = parse(img)
    assert is_exact_parse(parsed, scene)


def test_touching_objects_of_different_colours_stay_apart():
    img = render(Scene("white", ()))
    img[5:13, 5:13] = OBJECT_COLORS["red"]
    img[5:13, 13:21] = OBJECT_COLORS["blue"]
    parsed = parse(img)
    assert sorted(o.color for o in parsed.objects) == ["blue", "red"]
    assert all(o.shape == "square" and o.purity == 1.0 for o in parsed.objects)


def test_purity_drops_when_another_colour_shares_the_box():
    scene = Scene("white", (Obj("circle", "red", "large", 5, 5),))
    img = render(scene)
    img[5:8, 5:8] = OBJECT_COLORS["blue"]  # in the circle's empty box corner
    (o,) = parse(img).objects
    assert o.color == "red" and o.shape == "circle"
    assert o.purity == pytest.approx(o.area / (o.area + 9))


def test_centroid_matches_the_objects_mask():
    obj = Obj("triangle", "red", "large", 6, 9)
    o = parse(render(Scene("white", (obj,)))).objects[0]
    assert o.centroid == pytest.approx(object_centroid(obj))
    assert o.centroid[1] > obj.center[1]  # a triangle's mass sits below its box centre


@pytest.mark.parametrize(
    "image, message",
    [
        (np.zeros((64, 64, 3), dtype=np.uint8), "shape"),
        (np.zeros((32, 32), dtype=np.uint8), "shape"),
        (np.zeros((32, 32, 4), dtype=np.uint8), "shape"),
        (np.zeros((32, 32, 3), dtype=np.float32), "uint8"),
        ([[0, 0, 0]], "numpy array"),
    ],
)
def test_bad_images_raise_clear_errors(image, message):
    with pytest.raises(ValueError, match=message):
        parse(image)
