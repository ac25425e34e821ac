// livemocap live viewer: draws each tracked person's SMPL skeleton, the ground grid, root trails and foot
// contacts from the WebSocket bridge (/ws, python -m stream.viewer). World frame = the stream's: right-handed,
// Y up, metres, floor at y = 0 -- three.js uses the same, so joints are drawn as they arrive.
import * as THREE from "three";
import { OrbitControls } from "three/addons/controls/OrbitControls.js";

// SMPL joint order and parents (mocap/skeleton.py).
const PARENTS = [-1, 0, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 9, 9, 12, 13, 14, 16, 17, 18, 19, 20, 21];
// Contact order on the wire: L heel, L toe, R heel, R toe; drawn under l_ankle, l_foot, r_ankle, r_foot.
const CONTACT_JOINTS = [7, 10, 8, 11];
const PALETTE = [0xff8c1a, 0x1ab2ff, 0x3ddc84, 0xff4fa3, 0xffe14d, 0xa77bff];
const TRAIL = 600;          // root trail length, frames
const FORGET_MS = 5000;     // a track silent this long is removed
const BONE_RADIUS = 0.025, JOINT_RADIUS = 0.04;

const stats = { frames: 0, poses: 0, tracks: 0, lastSeq: -1, connected: false, rendered: 0, fps: 0 };
window.viewerStats = stats;  // read by tests and handy in the console

const container = document.getElementById("view");
const hud = document.getElementById("hud");
const renderer = new THREE.WebGLRenderer({ antialias: true, preserveDrawingBuffer: true });
renderer.setPixelRatio(window.devicePixelRatio);
renderer.setSize(container.clientWidth, container.clientHeight);
container.appendChild(renderer.domElement);

const scene = new THREE.Scene();
scene.background = new THREE.Color(0x10151c);
const camera = new THREE.PerspectiveCamera(50, container.clientWidth / container.clientHeight, 0.05, 200);
camera.position.set(0.0, 1.5, 3.6);  // in front of the person (+Z points towards the capture camera)
const controls = new OrbitControls(camera, renderer.domElement);
controls.target.set(0, 0.9, 0);
controls.update();

const grid = new THREE.GridHelper(20, 40, 0x5a6b7d, 0x2a3440);
scene.add(grid);
scene.add(new THREE.AxesHelper(0.3));

const UP = new THREE.Vector3(0, 1, 0);
const boneGeometry = new THREE.CylinderGeometry(BONE_RADIUS, BONE_RADIUS, 1, 10);
const jointGeometry = new THREE.SphereGeometry(JOINT_RADIUS, 12, 8);
const contactGeometry = new THREE.CircleGeometry(0.07, 24).rotateX(-Math.PI / 2);

class Person {
  constructor(track) {
    const color = new THREE.Color(PALETTE[track % PALETTE.length]);
    this.boneMaterial = new THREE.MeshBasicMaterial({ color, transparent: true });
    this.jointMaterial = new THREE.MeshBasicMaterial({ color: color.clone().lerp(new THREE.Color(0xffffff), 0.45),
                                                       transparent: true });
    this.group = new THREE.Group();
    this.bones = PARENTS.map((p) => (p < 0 ? null : new THREE.Mesh(boneGeometry, this.boneMaterial)));
    this.joints = PARENTS.map(() => new THREE.Mesh(jointGeometry, this.jointMaterial));
    for (const m of [...this.bones, ...this.joints]) if (m) this.group.add(m);
    this.contacts = CONTACT_JOINTS.map(() => {
      const m = new THREE.Mesh(contactGeometry, new THREE.MeshBasicMaterial({ color: 0x7cff6b, transparent: true,
                                                                             depthWrite: false }));
      m.visible = false;
      this.group.add(m);
      return m;
    });
    this.trailPositions = new Float32Array(TRAIL * 3);
    this.trailGeometry = new THREE.BufferGeometry();
    this.trailGeometry.setAttribute("position", new THREE.BufferAttribute(this.trailPositions, 3));
    this.trailGeometry.setDrawRange(0, 0);
    this.trailCount = 0;
    this.group.add(new THREE.Line(this.trailGeometry, new THREE.LineBasicMaterial({ color })));
    this.pelvis = new THREE.Vector3();
    this.seen = performance.now();
    this.hasPose = false;
    scene.add(this.group);
  }

  update(frame) {
    this.seen = performance.now();
    const tracking = frame.status === "tracking" || frame.status === "init";
    this.boneMaterial.opacity = this.jointMaterial.opacity = frame.joints ? 1.0 : 0.35;
    if (!frame.joints) return;
    const j = frame.joints, v = (k) => new THREE.Vector3(j[3 * k], j[3 * k + 1], j[3 * k + 2]);
    const pts = PARENTS.map((_, k) => v(k));
    pts.forEach((p, k) => this.joints[k].position.copy(p));
    PARENTS.forEach((p, k) => {
      if (p < 0) return;
      const dir = new THREE.Vector3().subVectors(pts[k], pts[p]);
      const len = dir.length();
      const bone = this.bones[k];
      bone.position.copy(pts[p]).addScaledVector(dir, 0.5);
      bone.quaternion.setFromUnitVectors(UP, len > 1e-6 ? dir.divideScalar(len) : UP);
      bone.scale.set(1, Math.max(len, 1e-4), 1);
    });
    CONTACT_JOINTS.forEach((k, i) => {
      const p = frame.contact ? frame.contact[i] : 0;
      const disc = this.contacts[i];
      disc.visible = tracking && p > 0.5;
      disc.material.opacity = Math.min(1, 0.3 + p * 0.7);
      disc.position.set(pts[k].x, 0.004 + 0.001 * i, pts[k].z);
    });
    this.pelvis.copy(pts[0]);
    this.hasPose = true;
    this.addTrail(pts[0]);
  }

  addTrail(p) {
    if (this.trailCount === TRAIL) {  // shift by one: cheap enough for a few hundred points
      this.trailPositions.copyWithin(0, 3);
      this.trailCount -= 1;
    }
    this.trailPositions.set([p.x, 0.002, p.z], 3 * this.trailCount);
    this.trailCount += 1;
    this.trailGeometry.setDrawRange(0, this.trailCount);
    this.trailGeometry.attributes.position.needsUpdate = true;
    this.trailGeometry.computeBoundingSphere();
  }

  dispose() {
    scene.remove(this.group);
    this.trailGeometry.dispose();
    this.boneMaterial.dispose();
    this.jointMaterial.dispose();
    this.contacts.forEach((m) => m.material.dispose());
  }
}

const people = new Map();
// Render on demand (a frame arrived, the user moved the view, the camera is still following): an idle page
// costs no CPU, which matters on the machine that also runs the capture.
let needsRender = true;
controls.addEventListener("change", () => { needsRender = true; });
let lastStatus = "";
let frameTimes = [];

function onFrame(frame) {
  stats.frames += 1;
  stats.lastSeq = frame.seq;
  if (frame.joints) stats.poses += 1;
  lastStatus = `track ${frame.track} ${frame.status}`;
  let person = people.get(frame.track);
  if (!person) {
    person = new Person(frame.track);
    people.set(frame.track, person);
  }
  person.update(frame);
  needsRender = true;
  const now = performance.now();
  frameTimes.push(now);
  frameTimes = frameTimes.filter((t) => now - t < 2000);
  stats.fps = frameTimes.length / 2;
}

let retryMs = 500;
function connect() {
  const ws = new WebSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/ws`);
  ws.onopen = () => { stats.connected = true; retryMs = 500; };
  ws.onmessage = (event) => {
    const msg = JSON.parse(event.data);
    if (msg.type === "pose") onFrame(msg);
    else if (msg.type === "hello") stats.sub = msg.sub;
  };
  ws.onclose = () => {
    stats.connected = false;
    setTimeout(connect, retryMs);
    retryMs = Math.min(retryMs * 2, 5000);
  };
}
connect();

const followTarget = new THREE.Vector3(0, 0.9, 0);
function animate() {
  requestAnimationFrame(animate);
  const now = performance.now();
  for (const [track, person] of people) {
    if (now - person.seen > FORGET_MS) { person.dispose(); people.delete(track); needsRender = true; }
  }
  stats.tracks = people.size;
  // Follow the people: move target and camera together, so the user's orbit is kept.
  const posed = [...people.values()].filter((p) => p.hasPose);
  if (posed.length) {
    const centre = new THREE.Vector3();
    posed.forEach((p) => centre.add(p.pelvis));
    centre.divideScalar(posed.length);
    followTarget.set(centre.x, 0.9, centre.z);
    const step = new THREE.Vector3().subVectors(followTarget, controls.target).multiplyScalar(0.1);
    if (step.lengthSq() > 1e-8) {
      controls.target.add(step);
      camera.position.add(step);
      needsRender = true;
    }
  }
  controls.update();
  if (needsRender) {
    needsRender = false;
    renderer.render(scene, camera);
    stats.rendered += 1;
  }
  const link = stats.connected ? "connected" : '<span class="bad">disconnected: retrying</span>';
  const text = `livemocap · ${link} · ${stats.frames} frames · ${stats.fps.toFixed(1)} fps · ` +
               `${people.size} track(s)${lastStatus ? " · " + lastStatus : ""}`;
  if (text !== hudText) { hud.innerHTML = text; hudText = text; }  // touch the DOM only on change
}
let hudText = "";
animate();

window.addEventListener("resize", () => {
  camera.aspect = container.clientWidth / container.clientHeight;
  camera.updateProjectionMatrix();
  renderer.setSize(container.clientWidth, container.clientHeight);
  needsRender = true;
});
