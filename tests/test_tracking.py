import time

from streamer.faces.detection import Face
from streamer.faces.tracking import Tracker
from streamer.live.buffers import LatestQueue

FACE = Face((100, 100, 50, 60), 0.9)


def test_a_face_stays_hidden_for_the_hold_time_after_it_is_lost():
    tracker = Tracker(hold_s=0.5)
    tracker.update(10.0, [FACE])
    tracker.update(10.2, [])  # the detector misses it
    assert tracker.faces_at(10.3) == [FACE]
    tracker.update(10.6, [])
    assert tracker.faces_at(10.6) == []  # 0.6 s after it was last seen: released


def test_a_face_stays_held_on_an_older_frame_after_later_detections_came_in():
    tracker = Tracker(hold_s=0.5)
    tracker.update(10.0, [FACE])
    tracker.update(10.7, [])  # a later frame is detected before the frame of 10.4 is hidden
    assert tracker.faces_at(10.4) == [FACE]  # 0.4 s after it was last seen: still held
    assert tracker.faces_at(10.7) == []


def test_a_face_first_seen_on_a_later_frame_is_hidden_on_the_frames_before():
    tracker = Tracker(hold_s=0.5)
    tracker.update(1.0, [])
    tracker.update(1.1, [])  # missed here
    tracker.update(1.2, [FACE])
    # up to hold_s before it was first seen (it was most likely there, missed)
    assert tracker.faces_at(1.1) == [FACE]
    assert tracker.faces_at(1.0) == [FACE]


def test_incomplete_detections_move_known_faces_but_do_not_answer_for_the_frame():
    tracker = Tracker(hold_s=0.5)
    tracker.update(1.0, [FACE])
    moved = Face((110, 104, 50, 60), 0.8)
    tracker.update(1.3, [moved], complete=False)
    assert tracker.current() == [moved]
    assert tracker.faces_at(1.3) == [moved]
    tracker.update(1.6, [moved], complete=False)
    # the newest complete detection is 0.6 s old: a face may have come in since
    assert tracker.faces_at(1.6) is None
    assert not tracker.wait_for(1.6, time.monotonic() + 0.05)  # it waits for a complete one, in vain
    tracker.update(1.7, [moved])
    assert tracker.faces_at(1.6) is None  # a later look does not say what this frame held
    assert tracker.wait_for(1.7, time.monotonic() + 0.05)
    assert tracker.faces_at(1.7) == [moved]


def test_after_a_scene_cut_only_a_complete_detection_since_answers_and_known_faces_are_no_guide():
    tracker = Tracker(hold_s=0.5)
    tracker.update(1.0, [FACE])
    assert tracker.faces_at(1.1) == [FACE]
    tracker.cut(1.2)
    assert tracker.current() is None  # nowhere to look around: the next detection must be whole
    assert tracker.faces_at(1.2) is None  # the detection of 1.0 was of another scene
    tracker.update(1.25, [FACE], complete=False)
    assert tracker.faces_at(1.3) is None
    other = Face((300, 50, 40, 40), 0.9)
    tracker.update(1.35, [other])
    # the first complete detection since the cut answers for the frames between (its faces on them too)
    assert other in tracker.faces_at(1.3) and FACE in tracker.faces_at(1.1)
    assert tracker.current()


def test_a_cut_long_ago_does_not_let_a_later_detection_answer_for_a_frame():
    tracker = Tracker(hold_s=0.5)
    tracker.update(1.0, [FACE])
    tracker.cut(1.2)
    tracker.update(1.25, [FACE])
    tracker.update(5.0, [FACE])  # then the detector stalls...
    tracker.update(5.9, [])  # ...and comes back: nothing said what the frames between held
    assert tracker.faces_at(5.6) is None


def test_a_moving_face_keeps_one_box_that_follows_it():
    tracker = Tracker(hold_s=0.5)
    tracker.update(1.0, [FACE])
    moved = Face((110, 104, 50, 60), 0.8)
    tracker.update(1.1, [moved])
    assert tracker.faces_at(1.1) == [moved]


def test_a_face_that_jumps_is_hidden_at_both_places_until_the_old_box_expires():
    tracker = Tracker(hold_s=0.5)
    tracker.update(1.0, [FACE])
    far = Face((400, 100, 50, 60), 0.8)
    tracker.update(1.1, [far])
    assert set(f.box for f in tracker.faces_at(1.1)) == {FACE.box, far.box}


def test_stale_detection_means_no_answer_so_the_frame_is_hidden_whole():
    tracker = Tracker(hold_s=0.5)
    assert tracker.faces_at(1.0) is None  # nothing detected yet
    tracker.update(1.0, [])
    assert tracker.faces_at(1.4) == []
    assert tracker.faces_at(1.6) is None  # newest detection older than the hold time


def test_latest_queue_drops_the_oldest_and_counts_it():
    queue: LatestQueue[int] = LatestQueue(2)
    assert not queue.put(1) and not queue.put(2)
    assert queue.put(3)  # 1 is dropped
    assert len(queue) == 2 and queue.dropped == 1
    assert queue.get(0.01) == 2 and queue.get(0.01) == 3
    assert queue.get(0.01) is None


def test_a_frame_asked_about_after_its_detections_were_pruned_gets_no_answer():
    tracker = Tracker(hold_s=0.5)
    tracker.update(1.0, [FACE])
    tracker.update(3.0, [])  # a gap: the detections of 1.0 are pruned
    assert tracker.faces_at(1.0) is None  # unknown, not "no faces": the frame is hidden whole
    assert tracker.faces_at(3.0) == []


def test_a_frame_before_the_first_detection_gets_no_answer_from_a_later_one_alone():
    tracker = Tracker(hold_s=0.5)
    tracker.update(2.0, [])  # nothing seen on a later frame does not mean nothing was there before
    assert tracker.faces_at(1.9) is None
    assert tracker.faces_at(2.0) == []
