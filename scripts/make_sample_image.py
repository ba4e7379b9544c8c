"""Draw assets/sample.png: a synthetic 640x480 scene (our own work, CC0), so the
demo and tests need no downloaded photo."""
import sys

from PIL import Image, ImageDraw

W, H = 640, 480
img = Image.new("RGB", (W, H))
px = img.load()
for y in range(H):
    for x in range(W):
        px[x, y] = (40 + x * 60 // W, 90 + y * 80 // H, 140)
d = ImageDraw.Draw(img)
d.rectangle([80, 120, 240, 280], fill=(220, 30, 30))
d.ellipse([360, 200, 560, 400], fill=(30, 60, 220))
d.polygon([(420, 60), (500, 170), (340, 170)], fill=(240, 200, 40))
img.save(sys.argv[1] if len(sys.argv) > 1 else "assets/sample.png")
