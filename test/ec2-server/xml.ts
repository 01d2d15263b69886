/**
 * EC2 response bodies. EC2's query protocol answers in XML in the API version's namespace, lists as
 * `<item>` children of `...Set` elements, and errors as `<Response><Errors><Error>` (the shape the SDK's
 * error deserializer reads `Code` from, which becomes the thrown exception's `name`).
 */
import { STATE_CODE, type Instance, type InstanceStateName } from './model.ts';

export const EC2_NS = 'http://ec2.amazonaws.com/doc/2016-11-15/';
export const OWNER_ID = '123456789012';

export function esc(s: string): string {
  return s.replace(/[<>&'"]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Tiny element builder: children are pre-rendered XML strings. */
const el = (name: string, ...children: string[]): string => `<${name}>${children.join('')}</${name}>`;
const text = (name: string, value: string | number | boolean): string => el(name, esc(String(value)));
const set = (name: string, items: string[]): string => el(name, ...items.map((i) => el('item', i)));

export function envelope(action: string, requestId: string, body: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<${action}Response xmlns="${EC2_NS}">${text('requestId', requestId)}${body}</${action}Response>`;
}

export function errorBody(code: string, message: string, requestId: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n${el(
    'Response',
    el('Errors', el('Error', text('Code', code), text('Message', message))),
    text('RequestID', requestId),
  )}`;
}

const state = (tag: string, name: InstanceStateName): string =>
  el(tag, text('code', STATE_CODE[name]), text('name', name));

export function instanceXml(inst: Instance): string {
  const tags = [...inst.tags].map(([k, v]) => text('key', k) + text('value', v));
  return [
    text('instanceId', inst.instanceId),
    text('imageId', inst.imageId),
    state('instanceState', inst.state),
    text('instanceType', inst.instanceType),
    text('launchTime', inst.launchTime.toISOString()),
    // A terminated instance has released its network interface, as in EC2.
    inst.state === 'terminated' ? '' : text('privateIpAddress', inst.privateIpAddress),
    tags.length > 0 ? set('tagSet', tags) : '',
    inst.clientToken !== undefined ? text('clientToken', inst.clientToken) : '',
  ].join('');
}

/** RunInstances answers with one reservation; DescribeInstances with a set of them. */
export function reservationXml(instances: Instance[]): string {
  return [
    text('reservationId', instances[0]?.reservationId ?? ''),
    text('ownerId', OWNER_ID),
    el('groupSet'),
    set('instancesSet', instances.map(instanceXml)),
  ].join('');
}

export function reservationSetXml(instances: Instance[]): string {
  const byReservation = new Map<string, Instance[]>();
  for (const inst of instances) {
    const group = byReservation.get(inst.reservationId) ?? [];
    group.push(inst);
    byReservation.set(inst.reservationId, group);
  }
  return set('reservationSet', [...byReservation.values()].map(reservationXml));
}

/** Start/Stop/TerminateInstances: each instance's previous and current state. */
export function stateChangeXml(changes: { inst: Instance; previous: InstanceStateName }[]): string {
  return set(
    'instancesSet',
    changes.map(({ inst, previous }) =>
      text('instanceId', inst.instanceId) + state('currentState', inst.state) + state('previousState', previous),
    ),
  );
}

export { text as textElement };
