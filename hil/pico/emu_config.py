"""What the bench Pico emulates, chosen at start (edit here, or ship another file).

Wiring: UART0 TX on GP0 through an RS-232 level shifter (MAX3232) to the box's
serial port; GND to GND. The box reads it like the real device.
"""

DEVICE = "masimo"  # masimo | nonin
MASIMO_VARIANT = "radical7"  # rad8 | radical5 | radical7 | rad7
NONIN_FORMAT = 2  # 2 | 7 | 8
SCENARIO = "desaturation"  # steady | desaturation | tachycardia | sensor-off (hil/scenarios.py)
SPEED = 1  # scenario seconds per real second
UART_ID = 0
UART_TX = 0
UART_RX = 1
BAUD = 9600  # both devices: 9600 8N1
