"""SynthHOI drawing and labelling rules: tight boxes, inverse kinematics, pose-decided verbs."""
import numpy as np
import pytest
from PIL import Image, ImageDraw

from hoikit.data.synth import objects as O
from hoikit.data.synth.canvas import draw_prims, tight_box
from hoikit.data.synth.classes import CORRESPONDENCE, HOIS, OBJECTS, PREDICATES, VERBS
from hoikit.data.synth.figures import Person, Pose, stand_on_ground
from hoikit.data.synth.planner import aim_gaze, ik_arm
from hoikit.data.synth.rules import gaze_target, label_scene, person_verbs, ray_hit

W = H = 128


def _pixels_box(prims):
    """Box of the non-black pixels after drawing ``prims`` alone (independent of tight_box)."""
    img = Image.new("RGB", (W, H), (0, 0, 0))
    draw_prims(ImageDraw.Draw(img), prims)
    ys, xs = np.nonzero(np.asarray(img).sum(2))
    return xs.min(), ys.min(), xs.max() + 1, ys.max() + 1


def _person(pose=None, x=50, ground=115, h=90):
    return stand_on_ground(Person(np.array([0.0, 0.0]), h, pose or Pose()), x, ground)


def test_class_tables_meet_the_spec():
    assert len(OBJECTS) - 1 >= 6 and len(VERBS) >= 10 and len(HOIS) >= 24 and len(PREDICATES) >= 10
    assert [c[0] for c in CORRESPONDENCE] == list(range(len(HOIS)))
    assert len(set(HOIS)) == len(HOIS)


def test_tight_boxes_equal_drawn_pixels():
    rng = np.random.default_rng(0)
    things = [O.ball(rng, (40, 40), 9), O.cup(rng, (60, 60), 14), O.book(rng, (64, 64), 24, 16),
              O.box(rng, 64, 100, 40, 30), O.chair(rng, 64, 110, 60, -1), O.table(rng, 60, 120, 60, 40),
              O.bicycle(rng, 64, 120, 90, 1), O.kite(rng, (64, 40), 30, string_to=(20, 120)),
              O.umbrella(rng, (64, 90), 60, -1)]
    for t in things:
        assert tight_box(t.prims, W, H) == _pixels_box(t.prims), t.name
    p = _person(Pose(facing=-1, arms=[(120, 30), (40, 60)], legs=[(50, 20), (-5, 0)], gaze_pitch=20))
    assert tight_box(p.prims(), W, H) == _pixels_box(p.prims())


def test_tight_box_clips_to_the_image():
    rng = np.random.default_rng(1)
    t = O.ball(rng, (-5, 60), 10)  # half outside on the left
    x1, y1, x2, y2 = tight_box(t.prims, W, H)
    assert x1 == 0 and 4 <= x2 <= 6 and y2 - y1 >= 19
    assert tight_box(O.ball(rng, (-40, 60), 10).prims, W, H) is None


def test_inverse_kinematics_puts_the_wrist_on_a_reachable_target():
    for facing in (1, -1):
        p = _person(Pose(facing=facing))
        sh = p.keypoints()["shoulder"]
        target = sh + np.array([facing * 15.0, 12.0])
        p.set_pose(arms=[ik_arm(sh, target, p.height, facing), p.pose.arms[1]])
        np.testing.assert_allclose(p.keypoints()["wrist0"], target, atol=1e-6)


def test_ray_hit_hand_case():
    assert ray_hit((0, 0), (1, 0), (2, -1, 4, 1)) == pytest.approx(2.0)
    assert ray_hit((0, 0), (-1, 0), (2, -1, 4, 1)) is None
    assert ray_hit((0, 0), (np.sqrt(0.5), np.sqrt(0.5)), (3, 3, 5, 5)) == pytest.approx(3 * np.sqrt(2))


def _verbs(p, t):
    box = tight_box(t.prims, W, H)
    return person_verbs(p, t, box, False)


def test_hold_and_throw_differ_by_arm_pose_only():
    rng = np.random.default_rng(2)
    low = _person(Pose(facing=1, arms=[(45, 20), (0, 0)]))
    ball = O.ball(rng, low.keypoints()["wrist0"] + (2, 2), 6)
    assert "hold" in _verbs(low, ball) and "throw" not in _verbs(low, ball)
    # same person place, arm raised behind the head, same ball shape just beyond the hand
    up = _person(Pose(facing=1, arms=[(170, 10), (0, 0)]))
    w, e = up.keypoints()["wrist0"], up.keypoints()["elbow0"]
    d = (w - e) / np.linalg.norm(w - e)
    thrown = O.ball(rng, w + d * 14, 6)
    v = _verbs(up, thrown)
    assert "throw" in v and "hold" not in v


def test_look_at_depends_on_head_direction():
    rng = np.random.default_rng(3)
    p = _person(Pose(facing=1))
    ball = O.ball(rng, (100, 100), 8)
    boxes = np.array([tight_box(p.prims(), W, H), tight_box(ball.prims, W, H)])
    aim_gaze(p, (100, 100))
    assert gaze_target(p, 0, boxes) == 1
    lab = label_scene([p], [ball], boxes, [1.0, 0.5], H)
    assert lab.hois == [(0, 1, VERBS.index("look_at"))]
    assert (0, 1, PREDICATES.index("looking at")) in lab.relations
    p.set_pose(gaze_facing=-1)  # same body, head turned away
    assert gaze_target(p, 0, boxes) is None
    assert label_scene([p], [ball], boxes, [1.0, 0.5], H).hois == []


def test_kick_and_stand_next_to_differ_by_the_foot():
    rng = np.random.default_rng(4)
    kicker = _person(Pose(facing=1, legs=[(55, 10), (-5, 0)]))
    toe = kicker.keypoints()["toe0"]
    ball = O.ball(rng, toe + (4, 0), 7)
    assert "kick" in _verbs(kicker, ball)
    stander = _person(Pose(facing=1, legs=[(3, 0), (-3, 0)]))
    assert "kick" not in _verbs(stander, ball)   # same ball, leg down: no contact, no kick
    box = tight_box(ball.prims, W, H)
    lab = label_scene([stander], [ball], np.array([tight_box(stander.prims(), W, H), box]), [1.0, 1.0], H)
    assert all(v != VERBS.index("kick") for _, _, v in lab.hois)


def test_several_verbs_on_one_object_and_one_predicate_per_pair():
    rng = np.random.default_rng(5)
    p = _person(Pose(facing=1, arms=[(50, 30), (0, 0)]))
    cup = O.cup(rng, p.keypoints()["wrist0"] + (2, 0), 10)
    boxes = np.array([tight_box(p.prims(), W, H), tight_box(cup.prims, W, H)])
    aim_gaze(p, ((boxes[1, 0] + boxes[1, 2]) / 2, (boxes[1, 1] + boxes[1, 3]) / 2))
    lab = label_scene([p], [cup], boxes, [1.0, 1.01], H)
    verbs = {VERBS[v] for _, _, v in lab.hois}
    assert {"hold", "look_at"} <= verbs
    assert [r[:2] for r in lab.relations].count((0, 1)) == 1
    assert (0, 1, PREDICATES.index("holding")) in lab.relations  # hold outranks look_at


def test_set_pose_rejects_a_field_pose_does_not_have():
    p = _person(Pose(facing=1))
    with pytest.raises(AttributeError, match="armz"):
        p.set_pose(armz=[(0, 0), (0, 0)])
